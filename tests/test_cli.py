"""CLI contract: --help everywhere, one-line errors, --debug tracebacks, make-tiny."""

from __future__ import annotations

import pytest

from scenetg.cli import main

COMMANDS = ["build", "shots", "captions", "filter", "export", "inspect", "publish", "eval",
            "ground", "answer", "eval-suite", "demo", "models make-tiny"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    assert main([*command.split(), "--help"]) == 0
    assert "Usage" in capsys.readouterr().out


def test_bad_config_is_a_one_line_usage_error(tmp_path, capsys):
    cfg = tmp_path / "build.yaml"
    cfg.write_text("shots:\n  detector: magic\n")
    (tmp_path / "v").mkdir()
    assert main(["build", "--videos", str(tmp_path / "v"), "--out", str(tmp_path / "o"), "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: shots.detector: expected one of content, adaptive, got 'magic'"


def test_unknown_config_key_is_named(tmp_path, capsys):
    cfg = tmp_path / "build.yaml"
    cfg.write_text("captions:\n  modle: x\n")
    assert main(["build", "--videos", str(tmp_path), "--out", str(tmp_path / "o"), "-c", str(cfg)]) == 2
    assert "unknown config key captions.modle (known: " in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path, capsys):
    assert main(["--debug", "export", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "no manifest.json" in err


def test_stage_command_without_manifest_says_what_to_run(tmp_path, capsys):
    assert main(["captions", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "scenetg shots" in err


def test_make_tiny_writes_loadable_checkpoints(tmp_path, capsys):
    assert main(["models", "make-tiny", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m" / "qwen" / "config.json").is_file()
    assert (tmp_path / "m" / "clip" / "open_clip_config.json").is_file()
    assert "--caption-model" in capsys.readouterr().out


def test_ctrl_c_says_how_to_resume_and_exits_130(tmp_path, monkeypatch, capsys):
    from scenetg.curate.run import pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "build", interrupted)
    (tmp_path / "v").mkdir()
    assert main(["build", "--videos", str(tmp_path / "v"), "--out", str(tmp_path / "o")]) == 130
    assert "interrupted; finished work is kept — re-run with --resume" in capsys.readouterr().err


def test_a_missing_option_is_a_usage_error(capsys):
    assert main(["build"]) == 2
    err = capsys.readouterr().err
    assert "Missing option '--videos'" in err and "Traceback" not in err
