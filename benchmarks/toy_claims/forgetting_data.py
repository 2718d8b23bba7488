"""The forgetting regime's data (`forgetting`): the toy splits, the palette-order questions (the
second skill: "Which colour comes after green?" -> ``cyan``, 16 facts asked with the video in the
prompt) and the colour-at-time questions tried first ("What colour is the scene at 12 s?"), with
the rule that scores an answer."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scenetg.toy_task import PALETTE, ToySplit, ToyVideo, make_split, split_specs

TRAIN_SEED, HELDOUT_SEED, QUESTION_SEED_OFFSET = 20000, 30000, 1


def question_text(t_s: int) -> str:
    return f"What colour is the scene at {t_s} s?"


def question_time(spec: ToyVideo, scene: int, rng: np.random.Generator) -> int:
    """A whole second strictly inside scene `scene` (never on a cut: scenes are >= 3 s)."""
    start, end = spec.bounds_s[scene], spec.bounds_s[scene + 1]
    return int(rng.integers(start + 1, end))


def colour_at(spec: ToyVideo, t_s: float) -> str:
    """The colour shown at `t_s` (scenes are half-open [start, end))."""
    return spec.colours[int(np.searchsorted(spec.bounds_s, t_s, side="right")) - 1]


_WORD = re.compile(r"[a-z]+")


def colour_words(text: str) -> set[str]:
    """The palette colour names in `text` (whole words, any case)."""
    return {w for w in _WORD.findall(text.lower()) if w in PALETTE}


def qa_correct(text: str, colour: str) -> bool:
    """Right when the answer names `colour` and no other palette colour."""
    return colour_words(text) == {colour}


def question_rows(name: str, n_videos: int, per_video: int, seed: int) -> list[dict]:
    """`per_video` colour questions (distinct scenes) on each video of the toy split `name` made
    with `seed` (the same videos `make_split` writes): ``sft.questions`` rows with ``colour``."""
    rng = np.random.default_rng(seed + QUESTION_SEED_OFFSET)
    rows = []
    for spec, _ in split_specs(name, n_videos, per_video, seed):
        for scene in sorted(rng.choice(len(spec.colours), size=per_video, replace=False).tolist()):
            t = question_time(spec, scene, rng)
            rows.append({"qid": f"{spec.vid}_q{t}", "vid": spec.vid, "duration": float(spec.duration_s),
                         "question": question_text(t), "answer": spec.colours[scene],
                         "colour": spec.colours[scene], "t_s": t})
    return rows


ORDER = tuple(PALETTE)
"""The palette's order (red, orange, yellow, green, cyan, blue, purple, pink), read as a circle."""


def order_answer(colour: str, relation: str) -> str:
    """The colour after / before `colour` in `ORDER` (circular)."""
    step = {"after": 1, "before": -1}[relation]
    return ORDER[(ORDER.index(colour) + step) % len(ORDER)]


def fact_rows(name: str, n_videos: int, grounding_per_video: int, per_video: int, seed: int) -> list[dict]:
    """`per_video` palette-order questions ("Which colour comes after green?" -> ``cyan``) asked
    with each video of the toy split `name` that `make_split` made with `grounding_per_video` and
    `seed`; ``sft.questions`` rows with ``colour`` (the answer). 16 facts (8 colours x after /
    before), drawn uniformly."""
    rng = np.random.default_rng(seed + 9)
    rows = []
    for spec, _ in split_specs(name, n_videos, grounding_per_video, seed):
        for k in range(per_video):
            colour, relation = ORDER[int(rng.integers(len(ORDER)))], ("after", "before")[int(rng.integers(2))]
            answer = order_answer(colour, relation)
            rows.append({"qid": f"{spec.vid}_{relation}_{colour}_{k}", "vid": spec.vid,
                         "duration": float(spec.duration_s), "question": f"Which colour comes {relation} {colour}?",
                         "answer": answer, "colour": answer, "fact": f"{relation} {colour}"})
    return rows


@dataclass(frozen=True)
class Data:
    train: ToySplit
    train_facts: Path
    heldout: ToySplit
    heldout_facts: list[dict]
    train_at_time: Path
    heldout_at_time: list[dict]


def _jsonl(path: Path, make) -> list[dict]:
    if not path.is_file():
        path.write_text("".join(json.dumps(r) + "\n" for r in make()))
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def make_data(root: Path, sizes: Any) -> Data:
    """The training and held-out splits and their questions (cached JSONL under `root`);
    `sizes` a `forgetting.Sizes`."""
    train = make_split(root, "fg_train", sizes.train_videos, sizes.per_video, TRAIN_SEED)
    held = make_split(root, "fg_heldout", sizes.heldout_videos, 1, HELDOUT_SEED)
    at_train = train.jsonl.with_name("fg_train_questions.jsonl")
    _jsonl(at_train, lambda: question_rows("fg_train", sizes.train_videos, sizes.per_video, TRAIN_SEED))
    at_held = _jsonl(held.jsonl.with_name("fg_heldout_questions.jsonl"),
                     lambda: question_rows("fg_heldout", sizes.heldout_videos, 1, HELDOUT_SEED))
    facts_train = train.jsonl.with_name(f"fg_train_facts{sizes.facts_per_video}.jsonl")
    _jsonl(facts_train, lambda: fact_rows("fg_train", sizes.train_videos, sizes.per_video, sizes.facts_per_video, TRAIN_SEED))
    facts_held = _jsonl(held.jsonl.with_name("fg_heldout_facts.jsonl"),
                        lambda: fact_rows("fg_heldout", sizes.heldout_videos, 1, 1, HELDOUT_SEED))
    return Data(train, facts_train, held, facts_held, at_train, at_held)
