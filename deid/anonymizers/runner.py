"""anonymize(cfg): anonymize images, folders and videos with a chosen anonymizer."""

from __future__ import annotations

from omegaconf import DictConfig

from deid.hydra_entry import not_implemented


def anonymize(cfg: DictConfig) -> dict[str, int]:
    """Anonymize `cfg.in` into `cfg.out`; returns the summary counts."""
    raise not_implemented(
        "anonymization (python anonymize.py in=... out=...)", "the anonymize issue"
    )
