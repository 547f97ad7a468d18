"""Exact chunked k-NN: equals brute force (torch.cdist, scikit-learn) for any chunking."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from deid_eval.metrics.knn import chunked_topk

CHUNKS = [(1, 1), (5, 3), (7, 13), (64, 1000)]


def _reference(
    queries: torch.Tensor, gallery: torch.Tensor, k: int, exclude: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Full float64 distance matrix, rows sorted by (distance, gallery index)."""
    dist = torch.cdist(queries.double(), gallery.double())
    if exclude is not None:
        rows = (exclude >= 0).nonzero().squeeze(1)
        dist[rows, exclude[rows]] = float("inf")
    order = np.stack([np.lexsort((np.arange(len(row)), row)) for row in dist.numpy()])[:, :k]
    order = torch.from_numpy(order)
    return dist.gather(1, order), order


def _integer_data(seed: int, n_q: int = 23, n_g: int = 57, dim: int = 3) -> tuple:
    """Small integer vectors: every distance is exact in float32, so ties are exact too."""
    gen = torch.Generator().manual_seed(seed)
    queries = torch.randint(-1, 2, (n_q, dim), generator=gen).float()
    gallery = torch.randint(-1, 2, (n_g, dim), generator=gen).float()
    return queries, gallery


@pytest.mark.parametrize(("query_chunk", "gallery_chunk"), CHUNKS)
@pytest.mark.parametrize("k", [1, 4, 20])
def test_exact_ties_break_by_lower_gallery_index(query_chunk: int, gallery_chunk: int, k: int):
    queries, gallery = _integer_data(seed=k)
    dist, idx = chunked_topk(
        queries, gallery, k, query_chunk=query_chunk, gallery_chunk=gallery_chunk
    )
    ref_dist, ref_idx = _reference(queries, gallery, k)
    assert torch.equal(idx, ref_idx)
    torch.testing.assert_close(dist.double(), ref_dist)


@pytest.mark.parametrize(("query_chunk", "gallery_chunk"), CHUNKS)
def test_exclusions_with_ties(query_chunk: int, gallery_chunk: int):
    queries, gallery = _integer_data(seed=7)
    gen = torch.Generator().manual_seed(3)
    exclude = torch.randint(-1, len(gallery), (len(queries),), generator=gen)
    exclude[:3] = -1
    # Exclude the top-ranked item itself for some queries so exclusion really bites.
    exclude[3:8] = _reference(queries[3:8], gallery, 1)[1][:, 0]
    dist, idx = chunked_topk(
        queries, gallery, 6, exclude=exclude, query_chunk=query_chunk, gallery_chunk=gallery_chunk
    )
    ref_dist, ref_idx = _reference(queries, gallery, 6, exclude)
    assert torch.equal(idx, ref_idx)
    assert not bool((idx == exclude[:, None]).any())
    torch.testing.assert_close(dist.double(), ref_dist)


@pytest.mark.parametrize(("query_chunk", "gallery_chunk"), CHUNKS)
def test_matches_cdist_topk_and_sklearn_on_continuous_data(query_chunk: int, gallery_chunk: int):
    gen = torch.Generator().manual_seed(0)
    queries, gallery = torch.randn(31, 16, generator=gen), torch.randn(200, 16, generator=gen)
    dist, idx = chunked_topk(
        queries, gallery, 10, query_chunk=query_chunk, gallery_chunk=gallery_chunk
    )
    top = torch.cdist(queries, gallery).topk(10, dim=1, largest=False)
    assert torch.equal(idx, top.indices)
    torch.testing.assert_close(dist, top.values, atol=1e-4, rtol=1e-5)
    nn_dist, nn_idx = NearestNeighbors(algorithm="brute").fit(gallery).kneighbors(queries, 10)
    assert np.array_equal(idx.numpy(), nn_idx)
    np.testing.assert_allclose(dist.numpy(), nn_dist, atol=1e-4)


def test_cosine_matches_sklearn():
    gen = torch.Generator().manual_seed(1)
    queries, gallery = torch.randn(20, 8, generator=gen), torch.randn(90, 8, generator=gen) * 3
    dist, idx = chunked_topk(queries, gallery, 5, metric="cosine", gallery_chunk=17)
    nn = NearestNeighbors(algorithm="brute", metric="cosine").fit(gallery.double())
    nn_dist, nn_idx = nn.kneighbors(queries.double(), 5)
    assert np.array_equal(idx.numpy(), nn_idx)
    np.testing.assert_allclose(dist.numpy(), nn_dist, atol=1e-5)


def test_float64_is_exact_and_returns_float64():
    gen = torch.Generator().manual_seed(2)
    queries, gallery = torch.randn(12, 32, generator=gen), torch.randn(70, 32, generator=gen)
    dist, idx = chunked_topk(queries, gallery, 7, dtype=torch.float64, gallery_chunk=9)
    ref_dist, ref_idx = _reference(queries, gallery, 7)
    assert dist.dtype == torch.float64
    assert torch.equal(idx, ref_idx)
    torch.testing.assert_close(dist, ref_dist, atol=1e-10, rtol=1e-10)


def test_duplicates_of_the_query_come_first_in_index_order():
    gallery = torch.tensor([[3.0, 0.0], [1.0, 1.0], [0.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    dist, idx = chunked_topk(gallery[1:2], gallery, 4, gallery_chunk=2)
    assert idx.tolist() == [[1, 3, 4, 2]]
    assert dist[0, :3].tolist() == [0.0, 0.0, 0.0]


def test_empty_queries_and_k_equal_to_gallery():
    gallery = torch.randn(5, 4)
    dist, idx = chunked_topk(torch.empty(0, 4), gallery, 3)
    assert dist.shape == idx.shape == (0, 3)
    _, idx = chunked_topk(gallery, gallery, 5)
    assert sorted(idx[0].tolist()) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 6}, "k=6"),
        ({"k": 5, "exclude": torch.tensor([0, -1, -1])}, "k=5"),
        ({"k": 1, "exclude": torch.tensor([0, 1])}, "shape"),
        ({"k": 1, "exclude": torch.tensor([0, 1, 5])}, "gallery indices"),
        ({"k": 1, "metric": "hamming"}, "metric"),
        ({"k": 0}, "positive"),
    ],
)
def test_bad_arguments_raise(kwargs: dict, message: str):
    with pytest.raises(ValueError, match=message):
        chunked_topk(torch.randn(3, 4), torch.randn(5, 4), **kwargs)


def test_bad_tensors_raise():
    with pytest.raises(ValueError, match="dimension"):
        chunked_topk(torch.randn(3, 4), torch.randn(5, 3), 1)
    with pytest.raises(ValueError, match="floating"):
        chunked_topk(torch.ones(3, 4, dtype=torch.long), torch.randn(5, 4), 1)
    with pytest.raises(ValueError, match="NaN"):
        chunked_topk(torch.full((3, 4), float("nan")), torch.randn(5, 4), 1)
