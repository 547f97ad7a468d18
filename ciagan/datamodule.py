"""LightningDataModule over a preprocessing manifest (`deid.prep.faces` / `deid.prep.bodies`).

Resumable: the module's state (epoch, batches processed) is saved in every checkpoint and the
sampler skips those batches on resume, so `last.ckpt` continues with the very next batch.
DDP sharding is done by the sampler itself (set the trainer's `use_distributed_sampler=False`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from ciagan.data import (
    AugmentConfig,
    FaceImages,
    FaceTriplets,
    identity_index,
    to_image_tensor,
    to_map_tensor,
)
from deid.errors import DeidError, unknown_name
from deid.prep.faces import FaceEntry, read_manifest
from deid.prep.manifest import MANIFEST, SETTINGS, read_json
from deid.sampling import identities_first
from deid.training import ResumableDataModule

log = logging.getLogger("ciagan.data")
ITEM_KINDS = ("triplets", "images")
DATA_KINDS = ("faces", "bodies")


class CiaganDataModule(ResumableDataModule):
    """Train/val faces from `manifest_dir`; `items="triplets"` for the GAN, "images" for
    identity pre-training.

    `preprocess` (a `conf/prep/faces.yaml`-shaped mapping with `data`: the settings the
    standalone `python -m deid.prep.faces` uses too) lets `prepare_data` build the manifest
    when it is missing, so `python train.py experiment=ciagan_demo` works on a fresh clone;
    without it a missing manifest is a one-line error naming the command to run.

    `kind="bodies"` trains the paper's full-body variant: `manifest_dir` is a
    `python -m deid.prep.bodies` folder (`preprocess` then has `conf/prep/bodies.yaml`'s keys)
    and items come from `ciagan.body_data` (the silhouette in the `pose` key).
    """

    def __init__(
        self,
        manifest_dir: str,
        train_split: str = "train",
        val_split: str | None = None,
        items: str = "triplets",
        image_size: int = 128,
        batch_size: int = 16,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        same_prob: float = 0.5,
        target_rule: str = "different",
        augment: Mapping[str, float] | None = None,
        seed: int = 0,
        num_samples: int = 4,
        preprocess: Mapping[str, Any] | None = None,
        kind: str = "faces",
    ) -> None:
        super().__init__()
        if items not in ITEM_KINDS:
            raise unknown_name("datamodule.items", items, ITEM_KINDS)
        if kind not in DATA_KINDS:
            raise unknown_name("datamodule.kind", kind, DATA_KINDS)
        self.kind = kind
        self.manifest_dir = Path(manifest_dir)
        self.train_split = train_split
        self.val_split = val_split
        self.items = items
        self.image_size = image_size
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.same_prob = same_prob
        self.target_rule = target_rule
        self.augment = AugmentConfig(**dict(augment or {}))
        self.seed = seed
        self.num_samples = num_samples
        self.preprocess = dict(preprocess) if preprocess is not None else None
        self.train_set: FaceTriplets | None = None
        self.val_set: FaceImages | None = None

    # ------------------------------------------------------------------ data
    def prepare_data(self) -> None:
        if (self.manifest_dir / MANIFEST).is_file() or self.preprocess is None:
            return
        if self.kind == "bodies":
            from deid.prep.bodies import preprocess_bodies as preprocess
        else:
            from deid.prep.faces import preprocess

        log.warning("no manifest in %s: preprocessing the dataset first", self.manifest_dir)
        preprocess(OmegaConf.create({**self.preprocess, "out": str(self.manifest_dir)}))

    def _split(self, entries: list[FaceEntry], split: str) -> list[FaceEntry]:
        chosen = [e for e in entries if e.split == split]
        if not chosen:
            found = sorted({e.split for e in entries})
            raise DeidError(
                f"{self.manifest_dir}/{MANIFEST} has no faces of split {split!r} "
                f"(it has: {', '.join(found) or 'none'})"
            )
        return chosen

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        triplets_cls, images_cls = FaceTriplets, FaceImages
        if self.kind == "bodies":
            from ciagan.body_data import BodyImages, BodyTriplets
            from deid.prep.bodies import read_body_manifest

            entries: list[Any] = read_body_manifest(self.manifest_dir)
            triplets_cls, images_cls = BodyTriplets, BodyImages
        else:
            entries = read_manifest(self.manifest_dir)
        train = self._split(entries, self.train_split)
        labels = identity_index(train)
        dataset_cls = triplets_cls if self.items == "triplets" else images_cls
        self.train_set = dataset_cls(
            train,
            self.manifest_dir,
            image_size=self.image_size,
            same_prob=self.same_prob,
            target_rule=self.target_rule,
            augment=self.augment,
            labels=labels,
        )
        if self.val_split is not None:
            val = self._split(entries, self.val_split)
            self.val_set = images_cls(
                val,
                self.manifest_dir,
                image_size=self.image_size,
                augment=AugmentConfig(0, 0, 0, 0, 0),
                labels=identity_index(val),
            )

    @property
    def num_identities(self) -> int:
        self.setup()
        assert self.train_set is not None
        return self.train_set.num_identities

    def crop(self) -> dict[str, Any]:
        """How the manifest's crops were cut (`kind` + the preprocessing's crop settings, from
        the folder's settings.json): what inference must reproduce."""
        recorded = read_json(self.manifest_dir / SETTINGS) or {}
        return {"kind": self.kind, **dict(recorded.get("crop") or {})}

    def module_kwargs(self) -> dict[str, Any]:
        """What the LightningModule needs to know about the data to build its networks, and
        to record for inference (the crop)."""
        return {
            "num_identities": self.num_identities,
            "image_size": self.image_size,
            "crop": self.crop(),
        }

    # ------------------------------------------------------------------ loaders
    def val_dataloader(self) -> DataLoader | list:
        self.setup()
        if self.val_set is None or self.items != "images":
            return []
        return DataLoader(
            self.val_set,
            batch_size=self.val_batch_size,
            shuffle=False,
            num_workers=self.num_workers,
        )

    def sample_batch(self) -> dict[str, torch.Tensor]:
        """A fixed, un-augmented batch for sample grids: the first faces of distinct
        identities of the validation split (the training split when there is none)."""
        self.setup()
        source = self.val_set if self.val_set is not None else self.train_set
        assert source is not None
        picked = identities_first([e.identity for e in source.entries], self.num_samples)
        faces = [source.load(i) for i in picked]
        return {
            "image": torch.stack([to_image_tensor(f["image"]) for f in faces]),
            "pose": torch.stack([to_map_tensor(f["pose"]) for f in faces]),
            "mask": torch.stack([to_map_tensor(f["mask"][..., None]) for f in faces]),
        }
