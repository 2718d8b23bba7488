"""`scenetg.rl.parsing` is a public import path (DESIGN.md, "Interfaces that others script
against"); the answer parser itself lives in `scenetg.grounding.parsing`, which ground, answer,
captions and training share."""

from scenetg.grounding.parsing import format_ok, parse_answer, parse_choice

__all__ = ["format_ok", "parse_answer", "parse_choice"]
