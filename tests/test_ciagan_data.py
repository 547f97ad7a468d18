"""CIAGAN training data: resumable sharded sampling, pair and target-identity rules, and
landmark images / masks that stay aligned with the face through augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ciagan.data import AugmentConfig, FaceImages, FaceTriplets
from ciagan.datamodule import CiaganDataModule
from deid.errors import DeidError
from deid.prep.faces import read_manifest
from deid.sampling import ResumableSampler


def test_sampler_is_a_deterministic_permutation_per_epoch() -> None:
    sampler = ResumableSampler(20, batch_size=4, seed=3)
    first = list(sampler)
    assert sorted(i for i, _ in first) == list(range(20))
    assert list(sampler) == first  # same epoch, same keys (indices and draw seeds)
    sampler.set_epoch(1)
    second = list(sampler)
    assert [i for i, _ in second] != [i for i, _ in first]
    assert {s for _, s in second}.isdisjoint({s for _, s in first})  # fresh draws every epoch


def test_sampler_shards_disjointly_over_ranks() -> None:
    shards = [list(ResumableSampler(21, 2, seed=0, rank=r, world_size=3)) for r in range(3)]
    indices = [i for shard in shards for i, _ in shard]
    assert len(indices) == len(set(indices)) == 18  # 3 ranks x 3 full batches of 2
    assert len({len(shard) for shard in shards}) == 1  # equal work per rank (DDP needs it)


def test_sampler_skips_consumed_batches_only_in_their_epoch() -> None:
    full = list(ResumableSampler(12, batch_size=3, seed=1))
    sampler = ResumableSampler(12, batch_size=3, seed=1)
    sampler.skip_batches(2, epoch=0)
    assert list(sampler) == full[6:]
    assert list(sampler) == full  # applies once
    sampler.skip_batches(2, epoch=0)
    sampler.set_epoch(1)  # the trainer moved on: nothing to skip
    assert len(list(sampler)) == 12


@pytest.fixture(scope="module")
def demo_entries(tiny_data_dir: Path) -> tuple[list, Path]:
    out = tiny_data_dir / "preprocessed" / "demo_all"
    return [e for e in read_manifest(out) if e.split == "train"], out


def test_target_identity_is_never_the_source_by_default(demo_entries) -> None:
    entries, root = demo_entries
    dataset = FaceTriplets(entries, root, image_size=32)
    same = []
    for index in range(len(dataset)):
        for seed in range(5):
            item = dataset[(index, seed)]
            assert item["target_label"] != item["label"]
            assert item["same"] == float(item["pair_label"] == item["label"])
            same.append(item["same"])
    assert 0.3 < np.mean(same) < 0.7  # same_prob 0.5


def test_pair_rule_targets_the_pair(demo_entries) -> None:
    entries, root = demo_entries
    dataset = FaceTriplets(entries, root, image_size=32, target_rule="pair", same_prob=1.0)
    item = dataset[(0, 7)]
    assert item["target_label"] == item["pair_label"] == item["label"]
    with pytest.raises(DeidError, match="target rule"):
        FaceTriplets(entries, root, target_rule="nearest")


def test_maps_follow_the_face_through_augmentation(demo_entries) -> None:
    entries, root = demo_entries
    strong = AugmentConfig(hflip=1.0, rotate=10, scale=0.1, translate=0.1, color=0.2)
    dataset = FaceImages(entries, root, image_size=64, augment=strong)
    plain = dataset.load(0)
    moved = dataset.load(0, seed=5)
    assert set(np.unique(moved["mask"])) <= {0, 255}  # nearest interpolation keeps maps binary
    assert set(np.unique(moved["pose"])) <= {0, 255}
    # the landmark lines and the mask move together: lines stay on/inside the mask's hull
    for sample in (plain, moved):
        lines = sample["pose"][..., 0] > 0
        mask = sample["mask"] > 0
        ys, xs = np.nonzero(mask)
        inside = lines[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].sum()
        assert inside >= 0.9 * lines.sum()
    # the horizontal flip mirrors the mask (the demo faces are not symmetric to the pixel)
    assert not np.array_equal(plain["mask"], moved["mask"])
    assert dataset.load(0, seed=5)["image"].tobytes() == moved["image"].tobytes()  # seeded


def test_datamodule_names_a_missing_manifest_and_a_missing_split(
    tiny_data_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(DeidError, match="manifest.csv"):
        CiaganDataModule(str(tmp_path / "nowhere")).setup()
    module = CiaganDataModule(str(tiny_data_dir / "preprocessed" / "demo_all"), train_split="dev")
    with pytest.raises(DeidError, match="split 'dev'.*train, val"):
        module.setup()
