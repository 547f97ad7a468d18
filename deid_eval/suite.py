"""evaluate(cfg): run a metric suite on an anonymizer over a dataset."""

from __future__ import annotations

from omegaconf import DictConfig

from deid.hydra_entry import not_implemented


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Score the anonymizer `cfg.model` on `cfg.data`; returns every number it computed."""
    raise not_implemented("evaluation (python evaluate.py model=...)", "the deid_eval issue")
