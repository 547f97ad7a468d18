"""Pretrained feature extractors used by the evaluation metrics (FID/KID and friends)."""

from __future__ import annotations

from deid.features.fid_inception import FIDInceptionV3, load_fid_inception

__all__ = ["FIDInceptionV3", "load_fid_inception"]
