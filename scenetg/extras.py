"""Optional extras (`pip install 'scenetg[ray]'`, ...): a missing one is a one-line usage error.

The core install leaves out what only some users need (Ray, the OpenAI client, the training
stack); the code that needs one calls `require_extra` before importing it.
"""

from __future__ import annotations

import importlib

from scenetg.errors import ScenetgError


def require_extra(module: str, extra: str, feature: str) -> None:
    """Import `module`, or raise ScenetgError naming `feature` and the extra that provides it.

    Only the module itself being absent is reported that way; an installed package that fails
    to import (a broken dependency of its own) raises its real error.
    """
    try:
        importlib.import_module(module)
    except ImportError as exc:
        if exc.name is None or exc.name.split(".")[0] != module.split(".")[0]:
            raise
        raise ScenetgError(
            f"{feature} needs the [{extra}] extra: pip install 'scenetg[{extra}]'"
        ) from exc
