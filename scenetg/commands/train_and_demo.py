"""`scenetg train`, `scenetg models make-tiny` and `scenetg demo`: GRPO training, and the tiny
offline models and end-to-end run that exercise every stage without downloads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scenetg.commands.app import app, console, models_app, out_console, print_summary, state
from scenetg.demo import (
        check_demo_configs,
        default_assets_dir,
        one_torch_thread,
        run_demo,
        run_demo_eval,
        run_demo_train,
    )
from scenetg.demo_toy import TOY_HELDOUT, TOY_SFT, run_toy_leg
from scenetg.progress import rich_reporter
from scenetg.rl.config import load_train_config
from scenetg.rl.train import train as run_train


# ----- train -----------------------------------------------------------------------------------
@app.command()
def train(
    config: Annotated[Path, typer.Option("--config", "-c", help="Training config (pipelines/train.yaml).")],
    model: Annotated[str | None, typer.Option("--model", help="Policy: HF id or folder (overrides model).")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", help="Build folder, hub:ORG/NAME or annotation file (overrides data.dataset).")] = None,
    video_root: Annotated[str | None, typer.Option("--video-root", help="Folder the videos are under (overrides data.video_root).")] = None,
    output_dir: Annotated[str | None, typer.Option("--output-dir", "-o", help="Run folder (overrides output_dir).")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Stop after N optimizer steps (overrides grpo.max_steps, or sft.max_steps with algo sft).")] = None,
    algo: Annotated[str | None, typer.Option("--algo", help="grpo (GRPO, the default) or sft (supervised baseline on the same data and frames); overrides algo.")] = None,
    resume_from_checkpoint: Annotated[str | None, typer.Option("--resume-from-checkpoint", help="A checkpoint-N folder, or 'last': continue that run (its config.yaml must match).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a run already in the output folder (refused otherwise).")] = False,
) -> None:
    """GRPO training with token-aware KL and the Center Distance reward (TRL GRPOTrainer);
    --algo sft: the supervised baseline (TRL SFTTrainer) on the same data, frames and run folder."""

    state["interrupt_hint"] = (
        "interrupted; saved checkpoints are kept — continue with --resume-from-checkpoint last")
    overrides = {"model": model, "data.dataset": dataset, "data.video_root": video_root,
                 "output_dir": output_dir, "algo": algo}
    cfg = load_train_config(config, {k: v for k, v in overrides.items() if v is not None})
    if max_steps is not None:  # the step budget of the algorithm that runs
        overrides[f"{cfg.algo}.max_steps"] = max_steps
        cfg = load_train_config(config, {k: v for k, v in overrides.items() if v is not None})
    with rich_reporter(console) as reporter:
        result = run_train(cfg, resume_from_checkpoint=resume_from_checkpoint, reporter=reporter,
                           overwrite=overwrite)
    out_console.print(result.summary(), highlight=False)
    out_console.print(f"metrics: {result.metrics_path}  curves: {result.curves_path}")


# ----- models ----------------------------------------------------------------------------------
@models_app.command("make-tiny")
def make_tiny(out_dir: Annotated[Path, typer.Argument(help="Folder to write qwen/ and clip/ into.")]) -> None:
    """Write a tiny random Qwen2.5-VL and a tiny OpenCLIP, saved like real checkpoints."""
    from scenetg.models.tiny import make_tiny_models  # deferred: pulls torch

    paths = make_tiny_models(out_dir)
    for name, path in paths.items():
        out_console.print(f"{name}: {path}")
    out_console.print(f"use: --caption-model {paths['qwen']} --clip-model {paths['clip']}")


# ----- demo ------------------------------------------------------------------------------------
@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo's videos, models and dataset.")] = Path("demo_out"),
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Demo build config (default: the packaged pipelines/demo/build.yaml).")] = None,
    eval_config: Annotated[Path | None, typer.Option("--eval-config", help="Demo evaluation config (default: the packaged pipelines/demo/eval.yaml).")] = None,
    assets: Annotated[Path | None, typer.Option("--assets", help="Folder of real sample clips (default: ../shared/assets/videos when present).")] = None,
    train_config: Annotated[Path | None, typer.Option("--train-config", help="Demo training config (default: the packaged pipelines/demo/train.yaml).")] = None,
    toy_train_config: Annotated[Path | None, typer.Option("--toy-train-config", help="Toy leg's GRPO config (default: the packaged pipelines/demo/toy_train.yaml).")] = None,
    toy_eval_config: Annotated[Path | None, typer.Option("--toy-eval-config", help="Toy leg's evaluation config (default: the packaged pipelines/demo/toy_eval.yaml).")] = None,
) -> None:
    """End-to-end offline run: sample videos + tiny models -> build -> train -> ground -> eval -> report,
    then GRPO from a shipped toy SFT checkpoint, evaluated beside it and the baselines."""

    check_demo_configs(config, train_config, eval_config, toy_train_config, toy_eval_config)
    with one_torch_thread(), rich_reporter(console) as reporter:
        paths, summary = run_demo(out, config, assets or default_assets_dir(), reporter)
        # from the toy SFT checkpoint: the random tiny model earns no reward, so its GRPO curves are flat 0
        trained = run_demo_train(paths, out, train_config, reporter, start_model=Path(str(TOY_SFT)))
        results, report = run_demo_eval(paths, out, eval_config, reporter, trained=trained)
        toy, toy_trained, _, toy_report = run_toy_leg(out, paths.models / "clip", toy_train_config,
                                                       toy_eval_config, reporter)
    print_summary(summary, "scenetg demo: build")
    out_console.print(f"\nTrained (GRPO on this dataset, from the toy SFT checkpoint): {trained}  "
                      f"curves: {trained.parent / 'curves.png'}")
    out_console.print("\n" + report.read_text().split("\n\n![")[0], highlight=False)
    out_console.print(f"\nEvaluation report: {report} (IoU histogram: {report.parent / 'iou_distribution.png'})")
    out_console.print(
        f"\nToy grounding: GRPO from the shipped SFT checkpoint ({toy.sft_start}) on toy videos it "
        f"never saw; {TOY_HELDOUT.videos * TOY_HELDOUT.per_video} held-out queries. The random tiny "
        f"model above cannot ground; this one can, so trained vs baselines means something here.")
    out_console.print("\n" + toy_report.read_text().split("\n\n![")[0].split("\n", 1)[1].strip(), highlight=False)
    out_console.print(f"\nToy report: {toy_report}  trained: {toy_trained}  curves: {toy_trained.parent / 'curves.png'}")
    out_console.print(f"\nDataset: {paths.dataset}")
    out_console.print(f"  card:    {paths.dataset / 'README.md'}")
    out_console.print(f"  queries: {paths.dataset / 'data'}   audit: {paths.dataset / 'audit'}")
    out_console.print(f"  load:    python -c \"import datasets; print(datasets.load_dataset('{paths.dataset}'))\"")
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)
