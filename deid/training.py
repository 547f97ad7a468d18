"""train(cfg): the shared Lightning/Hydra glue used by both methods.

The experiment config names a datamodule and a module (`_target_`s); the datamodule is set up
first and its `module_kwargs()` (e.g. the number of identities) complete the module. The
resolved config is written next to the run and into every checkpoint, so a checkpoint rebuilds
its model alone. Loggers are finalised even when a run crashes, so one failed job does not take
a sweep down with it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from deid.checkpoints import CONFIG_KEY
from deid.errors import DeidError
from deid.hydra_entry import group_options, run_dir_of
from deid.media import atomic_write

log = logging.getLogger("deid.training")


class ResolvedConfigInCheckpoint(pl.Callback):
    """Stores the resolved run config (plain containers: loads with weights_only=True)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CONFIG_KEY] = self.config


def resolve_ckpt_path(value: str | None, run_dir: Path) -> str | None:
    """`null` = fresh start; `last` = this run folder's last.ckpt if present; else a path."""
    if value in (None, ""):
        return None
    if value == "last":
        candidate = run_dir / "checkpoints" / "last.ckpt"
        return str(candidate) if candidate.is_file() else None
    path = Path(value)
    if not path.is_file():
        raise DeidError(f"ckpt_path={value}: no such checkpoint file")
    return str(path)


def _instantiate_all(group: DictConfig | None) -> list[Any]:
    if not group:
        return []
    return [instantiate(spec) for spec in group.values() if spec is not None]


def _write_config(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_write(run_dir / "config.yaml", "w") as handle:
            handle.write(OmegaConf.to_yaml(OmegaConf.create(resolved)))
    return resolved


def check_experiment(cfg: DictConfig) -> None:
    """An experiment names the method (datamodule, module, callbacks); the base config does not."""
    missing = [group for group in ("datamodule", "module") if cfg.get(group) is None]
    if missing:
        raise DeidError(
            f"no {' and '.join(missing)}: choose an experiment, python train.py experiment=NAME "
            f"(known: {', '.join(group_options('experiment'))})"
        )


def build(cfg: DictConfig) -> tuple[pl.LightningDataModule, pl.LightningModule, pl.Trainer]:
    """Datamodule, module and trainer of an experiment config (tests call this directly)."""
    check_experiment(cfg)
    run_dir = run_dir_of(cfg)
    resolved = _write_config(cfg, run_dir)
    datamodule = instantiate(cfg.datamodule, _convert_="all")
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        datamodule.prepare_data()
    extra = datamodule.module_kwargs() if hasattr(datamodule, "module_kwargs") else {}
    # nested `_target_`s (the optimizer) are built by the module itself, from plain dicts it
    # stores in its checkpoints
    spec = OmegaConf.to_container(cfg.module, resolve=True)
    assert isinstance(spec, dict)
    module_cls = get_class(spec.pop("_target_"))
    module = module_cls(**spec, **extra)
    callbacks = [*_instantiate_all(cfg.get("callbacks")), ResolvedConfigInCheckpoint(resolved)]
    loggers = _instantiate_all(cfg.get("logger"))
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return datamodule, module, trainer


def train(cfg: DictConfig) -> dict[str, float]:
    """Train the model an experiment config describes; returns the final logged metrics."""
    if cfg.get("seed") is not None:
        pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    datamodule, module, trainer = build(cfg)
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), run_dir_of(cfg))
    status = "failed"
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        status = "success"
    finally:
        for logger in trainer.loggers:
            logger.finalize(status)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if trainer.is_global_zero:
        checkpoint = trainer.checkpoint_callback
        where = getattr(checkpoint, "dirpath", None)
        log.info("training finished; checkpoints in %s", where)
        print(f"run folder: {run_dir_of(cfg)}" + (f"\ncheckpoints: {where}" if where else ""))
    return metrics
