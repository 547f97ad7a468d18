"""Import MediaPipe without its eager matplotlib.pyplot import.

Why: `import mediapipe` loads its drawing utilities, which import `matplotlib.pyplot` at module
level (~0.5 s: pyplot picks a GUI backend) only to plot landmarks in one function we never call.
Half a second is 5% of anonymizing a 10-second clip. While MediaPipe loads, `matplotlib.pyplot`
is a stand-in that imports the real pyplot on first attribute access, so MediaPipe's plotting
still works if anyone calls it; afterwards `import matplotlib.pyplot` is the real module.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

PYPLOT = "matplotlib.pyplot"


class _DeferredPyplot(types.ModuleType):
    """Becomes the real pyplot on first use."""

    def __getattr__(self, name: str) -> Any:
        if sys.modules.get(PYPLOT) is self:
            del sys.modules[PYPLOT]
        return getattr(importlib.import_module(PYPLOT), name)


def import_mediapipe() -> None:
    """Import the `mediapipe` package (and its solutions) with pyplot deferred."""
    if "mediapipe" in sys.modules or PYPLOT in sys.modules:
        importlib.import_module("mediapipe")
        return
    stand_in = _DeferredPyplot(PYPLOT)
    sys.modules[PYPLOT] = stand_in
    try:
        importlib.import_module("mediapipe")
    finally:
        if sys.modules.get(PYPLOT) is stand_in:
            del sys.modules[PYPLOT]
