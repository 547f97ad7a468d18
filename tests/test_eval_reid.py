"""ReIdRecall, SilhouetteKNNReId and silhouette features against brute force and invariants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deid.errors import MissingWeightError
from deid.features import silhouette as silhouette_features
from deid.features.silhouette import build_silhouette_features, silhouette_crop
from deid_eval.metrics import ReIdRecall, SilhouetteKNNReId
from deid_eval.metrics.knn import chunked_topk

N_IDS, PER_ID, DIM = 8, 5, 16


def _gallery(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clustered embeddings: N_IDS identities x PER_ID images, noisy enough to make errors."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(N_IDS, DIM, generator=gen)
    labels = torch.arange(N_IDS).repeat_interleave(PER_ID)
    embeddings = centres[labels] + 0.9 * torch.randn(len(labels), DIM, generator=gen)
    ids = torch.arange(len(labels)) * 10 + 3  # image ids need not be positions
    return embeddings, labels, ids


def _anonymized(gallery: torch.Tensor, seed: int = 1, noise: float = 1.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return gallery + noise * torch.randn(gallery.shape, generator=gen)


def _brute_force(queries, q_labels, q_ids, gallery, labels, ids, ks):
    """Python loops over a float64 distance matrix, ties by lower gallery index."""
    recall, link = dict.fromkeys(ks, 0), dict.fromkeys(ks, 0)
    for q, q_label, q_id in zip(queries.double(), q_labels.tolist(), q_ids.tolist(), strict=True):
        dist = ((gallery.double() - q) ** 2).sum(dim=1).tolist()
        ranked = sorted(range(len(dist)), key=lambda j: (dist[j], j))
        without_source = [j for j in ranked if ids[j] != q_id]
        for k in ks:
            recall[k] += any(labels[j] == q_label for j in without_source[:k])
            link[k] += any(ids[j] == q_id for j in ranked[:k])
    n = len(queries)
    return {k: recall[k] / n for k in ks}, {k: link[k] / n for k in ks}


def _anonymization_metric(ks=(1, 3, 5), **kwargs) -> tuple[ReIdRecall, tuple]:
    gallery, labels, ids = _gallery()
    keep = torch.arange(0, len(gallery), 2)  # anonymize every second image
    queries = _anonymized(gallery[keep])
    metric = ReIdRecall(ks=ks, **kwargs)
    metric.update(gallery, labels, ids, "gallery")
    metric.update(queries, labels[keep], ids[keep], "query")
    return metric, (queries, labels[keep], ids[keep], gallery, labels, ids)


@pytest.mark.parametrize("options", [{}, {"exact": True, "query_chunk": 3, "gallery_chunk": 4}])
def test_anonymization_recall_and_linkability_equal_brute_force(options: dict):
    ks = (1, 3, 5)
    metric, data = _anonymization_metric(ks, **options)
    result = metric.compute()
    recall, link = _brute_force(*data, ks)
    for k in ks:
        assert result[f"recall@{k}"].item() == pytest.approx(recall[k])
        assert result[f"linkability@{k}"].item() == pytest.approx(link[k])
    assert 0 < recall[1] < 1 and 0 < link[1] < 1  # the data is neither trivial nor hopeless
    assert result["chance"].item() == pytest.approx(1 / N_IDS)
    assert result["num_queries"].item() == len(data[0])
    assert result["num_gallery"].item() == N_IDS * PER_ID


def test_results_are_monotone_in_k():
    result = _anonymization_metric(ks=(1, 2, 3, 4, 5))[0].compute()
    for name in ("recall", "linkability"):
        values = [result[f"{name}@{k}"].item() for k in range(1, 6)]
        assert values == sorted(values)


def test_batched_updates_equal_one_update_in_any_order():
    gallery, labels, ids = _gallery()
    queries = _anonymized(gallery)
    single = ReIdRecall(ks=(1, 2))
    single.update(gallery, labels, ids, "gallery")
    single.update(queries, labels, ids, "query")
    batched = ReIdRecall(ks=(1, 2))
    for start in range(0, len(gallery), 7):
        part = slice(start, start + 7)
        batched.update(queries[part], labels[part], ids[part], "query")
        batched.update(gallery[part], labels[part], ids[part], "gallery")
    expected, result = single.compute(), batched.compute()
    assert result.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(result[key], value), key


def test_original_queries_give_clean_recall_and_full_linkability():
    gallery, labels, ids = _gallery()
    clean = ReIdRecall(ks=(1, 3))
    clean.update(gallery, labels, None, "gallery")
    clean_result = clean.compute()
    identity = ReIdRecall(ks=(1, 3))
    identity.update(gallery, labels, ids, "gallery")
    identity.update(gallery.clone(), labels, ids, "query")
    result = identity.compute()
    for k in (1, 3):
        assert result[f"recall@{k}"] == clean_result[f"recall@{k}"]
    assert result["linkability@1"].item() == 1.0
    assert 0.3 < clean_result["recall@1"].item() < 1.0


def test_clean_mode_equals_brute_force():
    gallery, labels, _ = _gallery(seed=4)
    metric = ReIdRecall(ks=(1, 2, 4), mode="clean")
    metric.update(gallery, labels, None, "gallery")
    result = metric.compute()
    dist = torch.cdist(gallery.double(), gallery.double()).fill_diagonal_(float("inf"))
    order = dist.argsort(dim=1)
    for k in (1, 2, 4):
        hits = (labels[order[:, :k]] == labels[:, None]).any(dim=1).double().mean()
        assert result[f"recall@{k}"].item() == pytest.approx(hits.item())


def test_diagonal_mask_is_right_where_dropping_the_first_column_is_wrong():
    # Images 0 and 1 are identical but of different people; 2 and 3 are far from both.
    gallery = torch.tensor([[0.0, 0.0], [0.0, 0.0], [10.0, 0.0], [10.0, 1.0]])
    labels = torch.tensor([0, 1, 0, 1])
    metric = ReIdRecall(mode="clean")
    metric.update(gallery, labels, torch.arange(4), "gallery")
    assert metric.compute()["recall@1"].item() == 0.0
    # Dropping the first column: image 1's first column is image 0 (a tie, lower index), so
    # image 1 "finds itself" and scores a hit it does not deserve.
    _, order = chunked_topk(gallery, gallery, 2)
    dropped = (labels[order[:, 1]] == labels).double().mean().item()
    assert dropped == 0.25


def test_collapsed_and_random_queries_give_chance():
    n_ids, per_id = 10, 5
    gen = torch.Generator().manual_seed(5)
    labels = torch.arange(n_ids).repeat_interleave(per_id)
    gallery = torch.randn(n_ids, DIM, generator=gen)[labels] + 0.3 * torch.randn(
        len(labels), DIM, generator=gen
    )
    ids = torch.arange(len(labels))
    for queries in (torch.zeros_like(gallery), torch.randn(gallery.shape, generator=gen)):
        metric = ReIdRecall(ks=(1,))
        metric.update(gallery, labels, ids, "gallery")
        metric.update(queries.repeat(4, 1), labels.repeat(4), ids.repeat(4), "query")
        result = metric.compute()
        assert result["chance"].item() == pytest.approx(0.1)
        assert abs(result["recall@1"].item() - 0.1) < 0.06
        assert result["linkability@1"].item() < 0.06


def _two_rank_split(metric_factory, single_factory=lambda: ReIdRecall(ks=(1, 3))):
    """Rank 0 gets the first half of everything, rank 1 the rest (and a repeated sample)."""
    gallery, labels, ids = _gallery(seed=2)
    queries = _anonymized(gallery, seed=3)
    half = len(gallery) // 2
    ranks = [metric_factory(), metric_factory()]
    parts = [slice(0, half), slice(half, None)]
    for metric, part in zip(ranks, parts, strict=True):
        metric.update(gallery[part], labels[part], ids[part], "gallery")
        metric.update(queries[part], labels[part], ids[part], "query")
    # A DistributedSampler pads rank 1 with a repeat of the first gallery sample.
    ranks[1].update(gallery[:1], labels[:1], ids[:1], "gallery")
    single = single_factory()
    single.update(gallery, labels, ids, "gallery")
    single.update(queries, labels, ids, "query")
    return ranks, single


def test_simulated_two_rank_sync_equals_single_process():
    recorded: list[torch.Tensor] = []

    def record(tensor, group=None):
        recorded.append(tensor)
        return [tensor]

    def gather(tensor, group=None):
        return [tensor, next(rank1_states)]

    def factory():
        return ReIdRecall(ks=(1, 3), dist_sync_fn=gather, distributed_available_fn=lambda: True)

    (rank0, rank1), single = _two_rank_split(factory)
    rank1.sync(dist_sync_fn=record, distributed_available=lambda: True)
    rank1_states = iter(recorded)
    synced = rank0.compute()
    expected = single.compute()
    assert synced.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(synced[key], value), key


def test_merge_state_equals_single_process():
    (rank0, rank1), single = _two_rank_split(lambda: ReIdRecall(ks=(1, 3)))
    rank1.merge_state(rank0)  # incoming state goes first: rank 0's data, then rank 1's
    expected, result = single.compute(), rank1.compute()
    for key, value in expected.items():
        assert torch.equal(result[key], value), key


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((torch.randn(4, 3), torch.arange(4), torch.arange(4), "probe"), "role"),
        ((torch.randn(4), torch.arange(4), torch.arange(4), "query"), "shape"),
        ((torch.randn(4, 3), torch.arange(3), torch.arange(4), "query"), r"shape \(4,\)"),
        ((torch.randn(4, 3), torch.rand(4), torch.arange(4), "query"), "integer"),
        ((torch.arange(12).view(4, 3), torch.arange(4), torch.arange(4), "query"), "floating"),
        ((torch.randn(4, 3), torch.arange(4), None, "query"), "ids are required"),
    ],
)
def test_update_validates_inputs(args: tuple, message: str):
    with pytest.raises(ValueError, match=message):
        ReIdRecall().update(*args)


def test_compute_validates_ids_and_dimensions():
    gallery, labels, ids = _gallery()
    metric = ReIdRecall()
    metric.update(gallery, labels, ids, "gallery")
    with pytest.raises(ValueError, match="dimension"):
        metric.update(torch.randn(2, DIM + 1), labels[:2], ids[:2], "query")
    metric.update(gallery[:2], labels[:2], torch.tensor([999, ids[0]]), "query")
    with pytest.raises(ValueError, match="not in the gallery"):
        metric.compute()
    wrong_label = ReIdRecall()
    wrong_label.update(gallery, labels, ids, "gallery")
    wrong_label.update(gallery[:1], labels[-1:], ids[:1], "query")
    with pytest.raises(ValueError, match="another label"):
        wrong_label.compute()
    clash = ReIdRecall(mode="clean")
    clash.update(gallery[:3], labels[:3], torch.tensor([1, 2, 1]), "gallery")
    with pytest.raises(ValueError, match="two different"):
        clash.compute()
    with pytest.raises(ValueError, match="gallery"):
        ReIdRecall(mode="clean").update(gallery, labels, ids, "query")
    with pytest.raises(ValueError, match="mode"):
        ReIdRecall(mode="closed")


# --- SilhouetteKNNReId ---------------------------------------------------------------------


def _silhouette_data(seed: int = 6, n: int = 40, dim: int = 12):
    gen = torch.Generator().manual_seed(seed)
    originals = torch.randn(n, dim, generator=gen)
    deidentified = originals[: n // 2] + 1.2 * torch.randn(n // 2, dim, generator=gen)
    person_ids = torch.arange(n) + 100
    return deidentified, person_ids[: n // 2], originals, person_ids


def test_silhouette_knn_equals_brute_force_and_rises_with_k():
    queries, q_ids, gallery, ids = _silhouette_data()
    metric = SilhouetteKNNReId()
    metric.update(gallery, ids, "gallery")
    metric.update(queries, q_ids, "query")
    result = metric.compute()
    qn = torch.nn.functional.normalize(queries.double(), dim=1)
    gn = torch.nn.functional.normalize(gallery.double(), dim=1)
    order = torch.cdist(qn, gn).argsort(dim=1)
    previous = 0.0
    for k in range(1, 11):
        expected = (ids[order[:, :k]] == q_ids[:, None]).any(dim=1).double().mean().item()
        assert result[f"reid@{k}"].item() == pytest.approx(expected)
        assert result[f"deid_success@{k}"].item() == pytest.approx(1 - expected)
        assert result[f"reid@{k}"].item() >= previous
        previous = result[f"reid@{k}"].item()
    assert 0 < result["reid@1"].item() < result["reid@10"].item() < 1
    assert result["num_queries"].item() == len(queries)


def test_silhouette_knn_identical_queries_are_always_found():
    _, _, gallery, ids = _silhouette_data()
    metric = SilhouetteKNNReId(ks=(1, 5))
    metric.update(gallery, ids, "gallery")
    metric.update(gallery * 3.0, ids, "query")  # scale does not matter after L2 normalisation
    assert metric.compute()["reid@1"].item() == 1.0


# --- silhouette features (FID Inception fallback; ResNet-50 weights are user-supplied) ------


def _notched_rectangle(shape: tuple[int, int]) -> np.ndarray:
    """A rectangle with a notch: the notch is inside the bounding box but not the person."""
    mask = np.zeros(shape, dtype=bool)
    mask[40:320, 140:380] = True
    mask[40:120, 140:200] = False
    return mask


@pytest.fixture(scope="module")
def fid_silhouette():
    return build_silhouette_features("fid_inception", fallback=None)


def test_silhouette_features_see_only_the_person(fid_silhouette, astronaut: np.ndarray):
    mask = _notched_rectangle(astronaut.shape[:2])
    inside, outside = astronaut.copy(), astronaut.copy()
    inside[150:250, 220:300] = 255 - inside[150:250, 220:300]
    outside[350:500, 0:120] = 0  # outside the bounding box
    outside[40:120, 140:200] = 255  # the notch: inside the box, not the person
    fill = fid_silhouette.fill
    base_crop = silhouette_crop(astronaut, mask, fill)
    assert base_crop.shape == (3, 224, 224)
    assert torch.equal(silhouette_crop(outside, mask, fill), base_crop)
    assert torch.equal(silhouette_crop(astronaut, mask.astype(np.float32), fill), base_crop)
    assert not torch.equal(silhouette_crop(inside, mask, fill), base_crop)
    features = fid_silhouette.extract([astronaut, inside, outside], [mask] * 3)
    assert features.shape == (3, 2048)
    assert bool(torch.isfinite(features).all())
    torch.testing.assert_close(features[2], features[0], atol=1e-5, rtol=1e-5)
    assert (features[1] - features[0]).abs().max().item() > 1e-2
    assert fid_silhouette.backbone_name == "fid_inception"
    assert len(fid_silhouette.weights_sha256) == 64


def test_silhouette_features_reject_empty_masks(fid_silhouette, astronaut: np.ndarray):
    mask = _notched_rectangle(astronaut.shape[:2])
    with pytest.raises(ValueError, match="mask 1 is empty"):
        fid_silhouette.extract([astronaut, astronaut], [mask, np.zeros_like(mask)])
    with pytest.raises(ValueError, match="mask 0"):
        fid_silhouette.extract([astronaut], [mask[:10]])


def test_missing_resnet50_falls_back_with_a_warning(monkeypatch, fid_silhouette):
    def missing(batch_size: int):
        raise MissingWeightError("weight 'resnet50_imagenet' is missing")

    monkeypatch.setitem(silhouette_features.BACKBONES, "resnet50", missing)
    monkeypatch.setitem(silhouette_features.BACKBONES, "fid_inception", lambda _: fid_silhouette)
    with pytest.warns(UserWarning, match="using fid_inception"):
        extractor = build_silhouette_features("resnet50", fallback="fid_inception")
    assert extractor.backbone_name == "fid_inception"


def test_missing_resnet50_without_fallback_raises(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("DEID_HOME", str(tmp_path / "deid"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("DEID_WEIGHT_RESNET50_IMAGENET", raising=False)
    monkeypatch.delenv("DEID_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises(MissingWeightError, match="resnet50_imagenet"):
        build_silhouette_features("resnet50", fallback=None)


def test_resnet50_backbone_with_a_user_supplied_file(monkeypatch, tmp_path: Path, astronaut):
    """The main path, with random weights standing in for torchvision's IMAGENET1K_V1 file."""
    from dataclasses import replace

    from torchvision.models import resnet50

    from deid import weights

    path = tmp_path / "resnet50.pth"
    torch.save(resnet50(weights=None).state_dict(), path)
    spec = replace(weights.REGISTRY["resnet50_imagenet"], sha256=None)  # random weights
    monkeypatch.setitem(weights.REGISTRY, "resnet50_imagenet", spec)
    monkeypatch.setenv("DEID_HOME", str(tmp_path / "deid"))
    monkeypatch.setenv("DEID_WEIGHT_RESNET50_IMAGENET", str(path))
    extractor = build_silhouette_features("resnet50", fallback=None)
    assert extractor.backbone_name == "resnet50"
    assert extractor.weights_sha256 == weights.sha256_of(path)
    mask = _notched_rectangle(astronaut.shape[:2])
    features = extractor.extract([astronaut], [mask])
    assert features.shape == (1, 2048)
    assert bool(torch.isfinite(features).all())
    # The background is the ImageNet mean, i.e. exactly 0 after normalisation.
    crop = silhouette_crop(astronaut, mask, extractor.fill)
    normalised = (crop[None] - extractor.mean) / extractor.std
    assert normalised[0, :, 0, 0].abs().max().item() < 1e-6
