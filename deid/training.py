"""train(cfg): the shared Lightning/Hydra training glue used by both methods."""

from __future__ import annotations

from omegaconf import DictConfig

from deid.hydra_entry import not_implemented


def train(cfg: DictConfig) -> dict[str, float]:
    """Train the model an experiment config describes; returns the final metrics."""
    raise not_implemented("training (python train.py experiment=...)", "the CIAGAN training issue")
