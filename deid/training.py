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

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from deid.checkpoints import CONFIG_KEY
from deid.errors import DeidError
from deid.hydra_entry import group_options, run_dir_of
from deid.media import atomic_write
from deid.sampling import ResumableSampler

log = logging.getLogger("deid.training")


class ResumableDataModule(pl.LightningDataModule):
    """A datamodule whose training loader resumes mid-epoch: it draws `self.train_set` (built
    by `setup`) in batches of `self.batch_size` through `deid.sampling.ResumableSampler`
    (seeded by `self.seed`, sharded over DDP ranks itself: set the trainer's
    `use_distributed_sampler=False`) on `self.num_workers` workers, and the loop position
    (epoch, batches processed) is saved in every checkpoint, so `last.ckpt` continues with the
    very next batch. Subclasses call `super().__init__()` and set those attributes."""

    persistent_workers = False  # keep loader workers between epochs (when there are any)
    train_set: Any
    batch_size: int
    seed: int
    num_workers: int

    def __init__(self) -> None:
        super().__init__()
        self._sampler: ResumableSampler | None = None
        self._resume: dict[str, int] | None = None

    def train_dataloader(self) -> DataLoader:
        self.setup()
        assert self.train_set is not None
        rank, world = 0, 1
        if self.trainer is not None:
            rank, world = self.trainer.global_rank, self.trainer.world_size
        self._sampler = ResumableSampler(
            len(self.train_set), self.batch_size, self.seed, rank=rank, world_size=world
        )
        if self._resume is not None:
            self._sampler.skip_batches(self._resume["batches"], self._resume["epoch"])
            self._resume = None
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            sampler=self._sampler,
            num_workers=self.num_workers,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def state_dict(self) -> dict[str, int]:
        if self.trainer is None:
            return {}
        batches = self.trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return {"epoch": int(self.trainer.current_epoch), "batches": int(batches)}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        if state_dict:
            self._resume = {"epoch": state_dict["epoch"], "batches": state_dict["batches"]}


def save_sample_image(trainer: pl.Trainer, image: np.ndarray, name: str, step: int) -> Path:
    """A sample grid (H, W, 3 uint8) written to `<run>/samples/<name>.png` and sent to every
    logger that takes images (TensorBoard, wandb; the CSV logger's record is the PNG)."""
    from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger

    from deid.media import write_image

    path = Path(trainer.default_root_dir) / "samples" / f"{name}.png"
    write_image(path, image)
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image("samples", np.transpose(image, (2, 0, 1)), step)
        elif isinstance(logger, WandbLogger):
            logger.log_image("samples", [image], step=trainer.global_step)
    log.info("sample grid: %s", path)
    return path


class PeriodicSamples(pl.Callback):
    """Sample grids of a fixed batch (`datamodule.sample_batch()`) every `every` values of the
    module's own counter (`counter`: its attribute name) and at the end of training, written
    by `save_sample_image` as `<prefix>_<counter>.png`. Subclasses implement `render`."""

    counter = "step"

    def __init__(self, every: int) -> None:
        self.every = int(every)
        self._batch: dict[str, Any] | None = None
        self._last_saved = -1

    def accepts(self, pl_module: pl.LightningModule) -> bool:
        return True

    def render(self, pl_module: pl.LightningModule, batch: dict[str, Any]) -> np.ndarray:
        """(H, W, 3) uint8 grid of `batch`."""
        raise NotImplementedError

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = trainer.datamodule
        if self.accepts(pl_module) and hasattr(datamodule, "sample_batch"):
            self._batch = datamodule.sample_batch()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_) -> None:
        if self.every > 0 and getattr(pl_module, self.counter) % self.every == 0:
            self.save(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.save(trainer, pl_module)

    def save(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Path | None:
        if self._batch is None or not trainer.is_global_zero:
            return None
        value = int(getattr(pl_module, self.counter))
        if value == self._last_saved:
            return None
        self._last_saved = value
        image = self.render(pl_module, self._batch)
        return save_sample_image(trainer, image, f"{self.counter}_{value:07d}", value)


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
