"""Config values are coerced to their declared types and checked, naming the key on failure."""

from __future__ import annotations

import json
import math

import pytest

from scenetg.cli import main
from scenetg.config import BuildConfig, load_build_config
from scenetg.config_fields import coerce_bool, coerce_float, coerce_int
from scenetg.errors import ConfigError


def test_string_booleans_are_parsed_strictly():
    cfg = load_build_config(None, {"captions.trust_remote_code": "false"})
    assert cfg.captions.trust_remote_code is False  # bool("false") would be True: remote code runs
    assert load_build_config(None, {"captions.trust_remote_code": "Yes"}).captions.trust_remote_code is True
    with pytest.raises(ConfigError, match=r"^captions.trust_remote_code: expected true or false, got 'maybe'$"):
        load_build_config(None, {"captions.trust_remote_code": "maybe"})


def test_numbers_from_strings_are_converted():
    cfg = load_build_config(None, {"shots.threshold": "27", "captions.frames_per_scene": "6",
                                   "export.splits": {"train": "1"}})
    assert cfg.shots.threshold == 27.0 and isinstance(cfg.shots.threshold, float)
    assert cfg.captions.frames_per_scene == 6 and isinstance(cfg.captions.frames_per_scene, int)
    assert cfg.export.splits == {"train": 1.0}


@pytest.mark.parametrize(("key", "value", "message"), [
    ("captions.frames_per_scene", 2.5, "captions.frames_per_scene: expected an integer >= 1, got 2.5"),
    ("captions.frames_per_scene", "eight", "captions.frames_per_scene: expected an integer >= 1, got 'eight'"),
    ("captions.frames_per_scene", True, "captions.frames_per_scene: expected an integer >= 1, got True"),
    ("filter.batch_size", 0, "filter.batch_size: expected 'auto' or an integer >= 1, got 0"),
    ("captions.batch_size", "big", "captions.batch_size: expected 'auto' or an integer >= 1, got 'big'"),
    ("captions.batch_size", 2.5, "captions.batch_size: expected 'auto' or an integer >= 1, got 2.5"),
    ("shots.threshold", float("nan"), "shots.threshold: expected a number > 0, got nan"),
    ("filter.min_margin", "nan", "filter.min_margin: expected a number >= 0, got 'nan'"),
    ("scenes.stitch_similarity", float("inf"), "scenes.stitch_similarity: expected a number >= -1 and <= 1, got inf"),
    ("export.splits", {"train": float("nan"), "test": 1.0},
     "export.splits.train: expected a number >= 0 and <= 1, got nan"),
    ("shots.detector", "magic", "shots.detector: expected one of content, adaptive, got 'magic'"),
    ("captions.openai.concurrency", "0", "captions.openai.concurrency: expected an integer >= 1, got 0"),
    ("engine.caption_gpus", "lots", "engine.caption_gpus: expected a number >= 0, got 'lots'"),
    ("captions.openai", None, "captions.openai: expected a mapping, got NoneType"),
])
def test_bad_values_name_the_key(key, value, message):
    with pytest.raises(ConfigError) as exc:
        load_build_config(None, {key: value})
    assert str(exc.value) == message


def test_no_nan_reaches_the_manifest(tmp_path, capsys):
    """A NaN in YAML (.nan) is a usage error before anything is written."""
    cfg = tmp_path / "build.yaml"
    cfg.write_text("filter:\n  min_margin: .nan\n")
    (tmp_path / "v").mkdir()
    out = tmp_path / "o"
    assert main(["build", "--videos", str(tmp_path / "v"), "--out", str(out), "-c", str(cfg)]) == 2
    assert capsys.readouterr().err == "error: filter.min_margin: expected a number >= 0, got nan\n"
    assert not (out / "manifest.json").exists()


def test_yaml_string_values_give_a_one_line_exit_2(tmp_path, capsys):
    cfg = tmp_path / "build.yaml"
    cfg.write_text("captions:\n  frames_per_scene: 2.5\n")
    (tmp_path / "v").mkdir()
    assert main(["build", "--videos", str(tmp_path / "v"), "--out", str(tmp_path / "o"), "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err == "error: captions.frames_per_scene: expected an integer >= 1, got 2.5\n"


def test_coerced_config_round_trips_through_json():
    cfg = load_build_config(None, {"shots.threshold": "30", "captions.trust_remote_code": "off"})
    again = json.loads(json.dumps(cfg.to_dict()))
    assert again["shots"]["threshold"] == 30.0 and again["captions"]["trust_remote_code"] is False
    assert BuildConfig().engine.caption_gpus == "auto"


def test_helpers_for_other_configs():
    assert coerce_bool("k", "OFF") is False and coerce_bool("k", 1) is True
    assert coerce_int("k", "12", min=1) == 12 and coerce_int("k", 4.0) == 4
    assert coerce_float("k", "0.5", min=0, max=1) == 0.5
    for bad in (2, "2", None, [True]):
        with pytest.raises(ConfigError, match="^k: expected true or false"):
            coerce_bool("k", bad)
    with pytest.raises(ConfigError, match=r"^k: expected a number > 0, got 0$"):
        coerce_float("k", 0, min=0, min_open=True)
    assert math.isclose(coerce_float("k", "1e-3"), 1e-3)
