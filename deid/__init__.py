"""deid: de-identify people in images and video, and measure how well it worked.

`deid.anonymize_image`, `deid.ImageAnonymizer` and `deid.anonymize_path` are the Python API
(see `deid.api`); they are imported on first use, so `import deid` stays light.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["ImageAnonymizer", "anonymize_image", "anonymize_path"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from deid import api

        return getattr(api, name)
    raise AttributeError(f"module 'deid' has no attribute {name!r}")
