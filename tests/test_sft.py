"""`scenetg train --algo sft`: the target text, the video collator (labels, video tensors, time
encoding), the loss against a hand computation, resume, and `ground` on the trained `final/`."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml

from scenetg.errors import ConfigError
from scenetg.grounding.parsing import format_ok, parse_answer
from scenetg.grounding.prompts import grounding_answer
from scenetg.rl.config import train_config_from_dict
from tests.train_fixtures import make_cfg


def sft_cfg(root, tiny_models, out, lora=False, **sft):
    data = make_cfg(root, tiny_models, out).to_dict()
    data["algo"] = "sft"
    data["lora"]["enabled"] = lora
    data["sft"] = {"per_device_train_batch_size": 4, "max_steps": 1, "save_steps": 1000,
                   "report_to": "none", "seed": 0, **sft}
    return train_config_from_dict(data)


# ------------------------------------------------------------------------------ target text


def test_the_target_is_the_template_the_parser_and_format_reward_read():
    assert grounding_answer(12, 17.5) == "<think></think><answer>12.0 - 17.5</answer>"
    assert grounding_answer(0.25, 3.75, 2) == "<think></think><answer>0.25 - 3.75</answer>"
    # whole seconds (the toy task's form): round half to even, as f"{x:.0f}"
    assert grounding_answer(2.5, 17.5, 0) == "<think></think><answer>2 - 18</answer>"
    for text in (grounding_answer(12, 17.5), grounding_answer(2.5, 17.5, 0)):
        assert format_ok(text)
    assert parse_answer(grounding_answer(12, 17.5)) == (12.0, 17.5)
    assert parse_answer(grounding_answer(2.5, 17.5, 0)) == (2.0, 18.0)


def test_toy_task_answer_is_the_whole_second_target():
    from scenetg.toy_task import answer_text

    assert answer_text(0, 6) == "<think></think><answer>0 - 6</answer>"
    assert answer_text(4.4, 10.6) == "<think></think><answer>4 - 11</answer>"
    assert answer_text(2.5, 3.5) == "<think></think><answer>2 - 4</answer>"  # half to even


# ------------------------------------------------------------------------------ config


def test_algo_and_sft_keys_are_checked_naming_the_key(grounding_set, tiny_models, tmp_path):
    base = sft_cfg(grounding_set, tiny_models, tmp_path / "run").to_dict()
    assert base["algo"] == "sft"
    assert train_config_from_dict({}).algo == "grpo"
    cases = [
        ({"algo": "ppo"}, "algo: expected one of grpo, sft, got 'ppo'"),
        ({"sft": {"packing": True}}, "sft.packing: video batches are not packed"),
        ({"sft": {"max_length": 512}}, "sft.max_length: video rows are never truncated"),
        ({"sft": {"answer_decimals": 4}}, "sft.answer_decimals"),
        ({"sft": {"answer_decimals": "two"}}, "sft.answer_decimals"),
        ({"sft": {"max_steps": 0}}, "sft.max_steps"),
    ]
    for change, message in cases:
        with pytest.raises(ConfigError) as exc:
            train_config_from_dict({**base, **change})
        assert str(exc.value).startswith(message), str(exc.value)
    assert train_config_from_dict({**base, "sft": {"answer_decimals": "0"}}).sft["answer_decimals"] == 0


# ------------------------------------------------------------------------------ collator and loss


@pytest.fixture(scope="module")
def sft_trainer(grounding_set, tiny_models, tmp_path_factory):
    from scenetg.rl.train import build_trainer

    torch.manual_seed(0)
    cfg = sft_cfg(grounding_set, tiny_models, tmp_path_factory.mktemp("sft") / "run")
    trainer, processor, n_rows = build_trainer(cfg)
    assert n_rows == 4
    return trainer


def _rows(trainer):
    return [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]


def test_labels_are_the_answer_and_end_of_turn_only(sft_trainer):
    from scenetg.models.qwen import processor_video_inputs, render_chat

    rows = _rows(sft_trainer)
    batch = sft_trainer.data_collator(rows)
    tok = sft_trainer.processing_class.tokenizer
    targets = {
        "a1": "<think></think><answer>0.0 - 2.0</answer>",
        "a2": "<think></think><answer>2.0 - 4.0</answer>",
        "b1": "<think></think><answer>3.0 - 4.0</answer>",
        "b2": "<think></think><answer>0.0 - 3.0</answer>",
    }
    collator = sft_trainer.data_collator
    videos = collator.videos(rows)
    for i, row in enumerate(rows):
        answer_ids = tok(targets[row["qid"]] + "<|im_end|>", add_special_tokens=False)["input_ids"]
        prompt = processor_video_inputs(
            sft_trainer.processing_class, [render_chat(sft_trainer.processing_class, row["prompt"])],
            [videos[i].frames], [videos[i].times_s], durations_s=[videos[i].duration_s])
        n = int(prompt["attention_mask"].sum())
        end = n + len(answer_ids)
        ids, labels, mask = batch["input_ids"][i], batch["labels"][i], batch["attention_mask"][i]
        assert ids[:n].tolist() == prompt["input_ids"][0, -n:].tolist()  # the prompt, unchanged
        assert ids[n:end].tolist() == answer_ids
        assert labels[n:end].tolist() == answer_ids
        assert (labels[:n] == -100).all() and (labels[end:] == -100).all()  # prompt, video, padding
        assert mask[:end].all() and not mask[end:].any()
        assert tok.decode(ids[n:end]) == targets[row["qid"]] + "<|im_end|>"
    # a: 6 s, b: 4 s at fps 2, max_frames 4 -> 4 frames each, sampled fps 4/6 and 4/4:
    # second_per_grid_ts = temporal_patch_size (2) / fps
    order = [r["video_path"].rsplit("/", 1)[-1] for r in rows]
    expected = [3.0 if name == "a.mp4" else 2.0 for name in order]
    assert batch["second_per_grid_ts"].tolist() == pytest.approx(expected)
    assert [v.times_s for v in videos][order.index("a.mp4")] == [0.0, 1.5, 3.0, 4.5]


def test_a_row_with_its_own_target_is_taught_that_text(sft_trainer):
    """A row of another task on the same video (a question about it) brings its answer text."""
    rows = _rows(sft_trainer)[:2]
    rows[1] = {**rows[1], "target": "green"}
    batch = sft_trainer.data_collator(rows)
    tok = sft_trainer.processing_class.tokenizer
    kept = batch["labels"][1] != -100
    assert tok.decode(batch["labels"][1][kept]) == "green<|im_end|>"
    kept = batch["labels"][0] != -100
    assert tok.decode(batch["labels"][0][kept]).endswith("</answer><|im_end|>")


QUESTIONS = [
    {"qid": "qa1", "vid": "a", "duration": 6.0, "question": "What colour is the scene at 3 s?", "answer": "green"},
    {"qid": "qb1", "vid": "b", "duration": 4.0, "question": "What colour is the scene at 1 s?", "answer": "blue"},
]


def test_question_rows_train_beside_the_grounding_rows(grounding_set, tiny_models, tmp_path):
    """``sft.questions``: a second task on the same videos. Its rows come after the grounding rows
    with the same columns; the prompt is the question with the video, the labels only the answer
    text and end-of-turn, and the video reaches the loss."""
    from scenetg.rl.train import build_trainer

    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    cfg = sft_cfg(grounding_set, tiny_models, tmp_path / "run", questions=str(questions))
    assert "questions" not in cfg.sft or cfg.sft["questions"] == str(questions)
    torch.manual_seed(0)
    trainer, processor, n_rows = build_trainer(cfg)
    assert n_rows == 6
    rows = [trainer.train_dataset[i] for i in range(6)]
    assert [r["qid"] for r in rows] == ["a1", "a2", "b1", "b2", "qa1", "qb1"]
    assert rows[4]["target"] == "green" and rows[0]["target"] is None  # the column survives datasets
    assert rows[4]["video_path"].endswith("a.mp4") and rows[4]["start_s"] is None
    batch = trainer.data_collator([rows[0], rows[4], rows[5]])
    tok = processor.tokenizer
    for i, answer in ((1, "green"), (2, "blue")):
        kept = batch["labels"][i] != -100
        assert tok.decode(batch["labels"][i][kept]) == answer + "<|im_end|>"
        prompt = tok.decode(batch["input_ids"][i][batch["attention_mask"][i].bool() & ~kept])
        assert QUESTIONS[i - 1]["question"] in prompt and "<|video_pad|>" in prompt
        assert "<answer>" not in prompt  # not the grounding instruction
    assert tok.decode(batch["labels"][0][batch["labels"][0] != -100]).endswith("</answer><|im_end|>")
    qa = trainer.data_collator(rows[4:])
    loss = _trainer_loss(trainer, qa)
    zeroed = {**qa, "pixel_values_videos": torch.zeros_like(qa["pixel_values_videos"])}
    assert abs(_trainer_loss(trainer, zeroed) - loss) > 1e-4
    assert loss == pytest.approx(float(_hand_loss(trainer.model, qa)), rel=1e-5)


def test_question_rows_errors_name_the_key(grounding_set, tmp_path):
    from scenetg.rl.sft import question_rows

    with pytest.raises(ConfigError, match=r"^sft.questions: .*nope.jsonl: no such file"):
        question_rows(tmp_path / "nope.jsonl", grounding_set / "videos")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**QUESTIONS[0], "answer": ""}) + "\n")
    with pytest.raises(ConfigError, match=r"^sft.questions: .*bad.jsonl:1: no answer"):
        question_rows(bad, grounding_set / "videos")
    bad.write_text(json.dumps(QUESTIONS[0]) + "\n{not json\n")
    with pytest.raises(ConfigError, match=r"^sft.questions: .*bad.jsonl:2: not JSON"):
        question_rows(bad, grounding_set / "videos")
    bad.write_text("[1, 2]\n")
    with pytest.raises(ConfigError, match=r"^sft.questions: .*bad.jsonl:1: expected a JSON object"):
        question_rows(bad, grounding_set / "videos")
    bad.write_text(json.dumps({**QUESTIONS[0], "vid": "zz"}) + "\n")
    with pytest.raises(ConfigError, match=r"no video 'zz'"):
        question_rows(bad, grounding_set / "videos")


def _hand_loss(model, batch) -> torch.Tensor:
    """Mean cross-entropy of the next-token predictions at the labelled positions."""
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    logp = torch.log_softmax(logits[:, :-1].float(), -1)
    labels = batch["labels"][:, 1:]
    keep = labels != -100
    picked = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return -(picked[keep]).sum() / keep.sum()


def _trainer_loss(trainer, batch) -> float:
    with torch.no_grad():
        return float(trainer.compute_loss(trainer.model, dict(batch)))


def test_loss_is_the_cross_entropy_of_the_answer_tokens(sft_trainer):
    batch = sft_trainer.data_collator(_rows(sft_trainer))
    n_answer = int((batch["labels"] != -100).sum())
    assert n_answer == 4 * 19  # 18 tokens of "<think></think><answer>S - E</answer>" + <|im_end|> (tiny BPE)
    assert _trainer_loss(sft_trainer, batch) == pytest.approx(float(_hand_loss(sft_trainer.model, batch)), rel=1e-5)


def test_the_video_reaches_the_loss(sft_trainer):
    batch = sft_trainer.data_collator(_rows(sft_trainer))
    loss = _trainer_loss(sft_trainer, batch)
    zeroed = {**batch, "pixel_values_videos": torch.zeros_like(batch["pixel_values_videos"])}
    assert abs(_trainer_loss(sft_trainer, zeroed) - loss) > 1e-4
    # every row's video rows, swapped with another row's (same grid: 4 frames of 64x36)
    per_row = list(torch.split(batch["pixel_values_videos"], batch["video_grid_thw"].prod(-1).tolist()))
    swapped = {**batch, "pixel_values_videos": torch.cat(per_row[1:] + per_row[:1])}
    assert abs(_trainer_loss(sft_trainer, swapped) - loss) > 1e-4


# ------------------------------------------------------------------------------ training and resume


class _Snapshots:
    """Trainable weights at train begin and after each step (a TrainerCallback)."""

    def __new__(cls):
        from transformers import TrainerCallback

        class Snapshots(TrainerCallback):
            def __init__(self):
                self.at = {}

            def _take(self, model, step):
                self.at[step] = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

            def on_train_begin(self, args, state, control, model=None, **kwargs):
                self._take(model, ("begin", state.global_step))

            def on_step_end(self, args, state, control, model=None, **kwargs):
                self._take(model, state.global_step)

        return Snapshots()


def _same(a: dict, b: dict, atol: float = 1e-6) -> bool:
    assert a.keys() == b.keys()
    return all(torch.allclose(a[k], b[k], atol=atol, rtol=0) for k in a)


@pytest.mark.slow
@pytest.mark.parametrize("lora", [True, False])
def test_resume_restores_the_weights(grounding_set, tiny_models, tmp_path, lora):
    """A run killed after checkpoint-2 and resumed equals the uninterrupted run: at resume its weights
    are the checkpoint's, after step 4 the uninterrupted run's. Every training step sees the video."""
    from scenetg.progress import Reporter
    from scenetg.rl.train import build_trainer

    class Steps(Reporter):
        def __init__(self):
            self.events = []

        def start(self, task, total):
            self.events.append(("start", task, total))

        def advance(self, task, n=1):
            self.events.append(("advance", task, n))

    bars = []

    def run(out, resume=None):
        cfg = sft_cfg(grounding_set, tiny_models, out, lora=lora, max_steps=4, save_steps=2,
                      per_device_train_batch_size=2, learning_rate=3e-3, lr_scheduler_type="linear")
        bars.append(Steps())
        trainer, _, _ = build_trainer(cfg, bars[-1])
        snaps = _Snapshots()
        trainer.add_callback(snaps)
        visual = next(m for n, m in trainer.model.named_modules() if n.endswith("visual"))
        grids = []
        visual.register_forward_hook(
            lambda m, args, kwargs, out: grids.append((args[1:] or [kwargs.get("grid_thw")])[0].tolist()),
            with_kwargs=True)
        trainer.train(resume_from_checkpoint=resume)
        return snaps.at, grids

    full, grids = run(tmp_path / "a")
    # one vision pass per step (a video shared by both rows is encoded once): 4 frames -> t 2,
    # 64x36 frames at the tiny processor's pixel floor -> 4x6 patches
    assert len(grids) == 4 and all(row == [2, 4, 6] for g in grids for row in g)
    assert not _same(full[("begin", 0)], full[2]) and not _same(full[2], full[4])
    ckpt = tmp_path / "b" / "checkpoint-2"
    shutil.copytree(tmp_path / "a" / "checkpoint-2", ckpt)
    resumed, grids_b = run(tmp_path / "b", resume=str(ckpt))
    assert len(grids_b) == 2
    assert _same(resumed[("begin", 2)], full[2])
    assert _same(resumed[4], full[4], atol=1e-5)
    # the progress bar counts SFT steps, a resumed one from the checkpoint's step
    assert bars[0].events == [("start", "SFT steps", 4)] + [("advance", "SFT steps", 1)] * 4
    assert bars[1].events == [("start", "SFT steps", 4), ("advance", "SFT steps", 2)] + [("advance", "SFT steps", 1)] * 2


@pytest.mark.slow
def test_cli_sft_run_folder_then_ground_reads_the_trained_answers(grounding_set, tiny_models, tmp_path, capsys):
    """Two queries of one video, learnt by heart: `scenetg ground` on `final/` answers each with its
    SFT target, parsed by the one parser (same frames, prompt and template at train and ground)."""
    from scenetg.cli import main

    out = tmp_path / "run"
    cfg = sft_cfg(grounding_set, tiny_models, out, per_device_train_batch_size=2, learning_rate=3e-3,
                  lr_scheduler_type="constant", logging_steps=10, save_steps=30).to_dict()
    cfg["data"]["limit"] = 2
    cfg["algo"] = "grpo"  # --algo on the command line wins over the file
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(cfg))
    assert main(["train", "-c", str(config), "--algo", "sft", "--max-steps", "60"]) == 0
    stdout = capsys.readouterr().out
    assert "trained 60 steps on 2 queries" in stdout and "last loss" in stdout
    assert yaml.safe_load((out / "config.yaml").read_text())["algo"] == "sft"
    assert {"checkpoint-30", "checkpoint-60", "final", "curves.png", "metrics.jsonl"} <= {p.name for p in out.iterdir()}
    logs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in logs if "loss" in r]
    assert [r["step"] for r in logs if "loss" in r] == [10, 20, 30, 40, 50, 60]
    assert losses[-1] < 0.2 * losses[0]

    ann = tmp_path / "ann.jsonl"
    ann.write_text("".join((grounding_set / "train.jsonl").read_text().splitlines(keepends=True)[:2]))
    preds = tmp_path / "preds.jsonl"
    assert main(["ground", "--model", str(out / "final"), "--annotations", str(ann),
                 "--videos", str(grounding_set / "videos"), "--out", str(preds), "--fps", "2",
                 "--max-frames", "4", "--max-new-tokens", "24", "--device", "cpu"]) == 0
    got = {r["qid"]: r for r in map(json.loads, preds.read_text().splitlines())}
    assert got["a1"]["raw"] == "<think></think><answer>0.0 - 2.0</answer>" and got["a1"]["pred"] == [0.0, 2.0]
    assert got["a2"]["raw"] == "<think></think><answer>2.0 - 4.0</answer>" and got["a2"]["pred"] == [2.0, 4.0]


def test_cli_errors_name_the_key_before_any_model_loads(grounding_set, tiny_models, tmp_path, capsys, monkeypatch):
    from scenetg.cli import main
    from scenetg.rl import train as train_module

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(train_module, "load_policy", no_model)
    assert main(["train", "--help"]) == 0
    assert "--algo" in capsys.readouterr().out
    config = tmp_path / "train.yaml"
    cases = [
        ({}, ["--algo", "ppo"], "algo: expected one of grpo, sft, got 'ppo'"),
        ({"sft": {"no_such_key": 1}}, [], "sft: SFTConfig.__init__() got an unexpected keyword argument 'no_such_key'"),
        ({"sft": {"lr_scheduler_type": "bogus"}}, [], "sft: bogus is not a valid SchedulerType"),
        ({"sft": {"padding_free": True}}, [], "sft.padding_free: video batches are padded"),
    ]
    for change, flags, message in cases:
        data = sft_cfg(grounding_set, tiny_models, tmp_path / "run").to_dict()
        data["sft"].update(change.get("sft", {}))
        config.write_text(yaml.safe_dump(data))
        assert main(["train", "-c", str(config), *flags]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]  # after the data summary line
        assert err.startswith(f"error: {message}"), err


def test_trl_sft_guard_fails_loudly_on_other_internals(monkeypatch):
    """The collator relies on two lines of TRL's SFTTrainer; code without them is refused."""
    from scenetg.rl import sft

    sft.check_trl_sft_internals()  # the pinned TRL passes
    monkeypatch.setitem(sft.SFT_INTERNALS, "compute_loss", ("a line TRL never had",))
    with pytest.raises(RuntimeError, match=r"SFTTrainer.compute_loss no longer contains .*video collator"):
        sft.check_trl_sft_internals()
