"""VQGAN full-body de-identification: segmentation-conditioned VQGAN + transformer synthesis.

`load_checkpoint(path)` returns the networks of a deid VQGAN checkpoint (converted from
taming with `python -m vqgan.convert_official`, or trained by deid).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vqgan.checkpoint import VQGANModels

__all__ = ["load_checkpoint"]


def load_checkpoint(source: Any, **kwargs: Any) -> VQGANModels:
    """See `vqgan.checkpoint.load_checkpoint` (imported lazily: `import vqgan` stays light)."""
    from vqgan.checkpoint import load_checkpoint as _load

    return _load(source, **kwargs)
