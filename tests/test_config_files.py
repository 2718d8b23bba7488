"""Every YAML config (build, train, eval-suite) is read by one function: the same one-line errors
for a bad file, and dotted-key overrides from the command line."""

from __future__ import annotations

import pytest

from scenetg.cli import main
from scenetg.config import load_build_config
from scenetg.errors import ConfigError
from scenetg.eval.suite import load_eval_config
from scenetg.rl.config import load_train_config

LOADERS = [load_build_config, load_train_config, load_eval_config]
BAD_FILES = [
    (b"captions: [unclosed\n", "invalid YAML (while parsing a flow sequence)"),
    (b"- a list\n- not a mapping\n", "expected a mapping at the top level"),
    (b"model: caf\xe9\n", "not UTF-8 text"),
]


@pytest.mark.parametrize("loader", LOADERS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("content,message", BAD_FILES, ids=["yaml", "list", "latin1"])
def test_a_bad_config_file_is_the_same_one_line_error_everywhere(tmp_path, loader, content, message):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        loader(path)
    assert str(info.value) == f"{path}: {message}"


@pytest.mark.parametrize("command", [["build", "--videos", "."], ["eval-suite"], ["train"]])
def test_commands_exit_2_with_one_line(tmp_path, capsys, command):
    path = tmp_path / "c.yaml"
    path.write_bytes(BAD_FILES[0][0])
    args = [*command, "-c", str(path)] + (["--out", str(tmp_path / "o")] if command[0] == "build" else [])
    assert main(args) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {path}: {BAD_FILES[0][1]}"]


def test_dotted_overrides_reach_nested_keys(tmp_path):
    path = tmp_path / "build.yaml"
    path.write_text("captions:\n  max_new_tokens: 32\n")
    cfg = load_build_config(path, {"captions.model": "/models/q", "filter.min_margin": "0.05"})
    assert (cfg.captions.model, cfg.captions.max_new_tokens, cfg.filter.min_margin) == ("/models/q", 32, 0.05)


@pytest.mark.parametrize("which, text, message", [
    ("build", "captions:\n  modle: x\n", "unknown config key captions.modle (known: "),
    ("train", "kl:\n  gamma: 1\n", "unknown config key kl.gamma (known: beta, beta_timestamp)"),
    ("eval", "benchmarks:\n  - {name: b, annotations: a.jsonl, videos: v, fps: 2}\n",
     "unknown config key benchmarks[0].fps (known: "),
    ("eval", "methdos: [model]\n", "unknown config key methdos (known: "),
    ("eval", "benchmarks:\n  - {name: b}\n", "benchmarks[0]: missing key(s) annotations, videos"),
])
def test_every_config_reader_names_an_unknown_key_the_same_way(tmp_path, which, text, message):
    """build, train and eval-suite read their YAML through one reader: one message form."""
    path = tmp_path / "c.yaml"
    path.write_text(text)
    load = {"build": load_build_config, "train": load_train_config, "eval": load_eval_config}[which]
    with pytest.raises(ConfigError) as err:
        load(path)
    assert message in str(err.value) and "\n" not in str(err.value)
