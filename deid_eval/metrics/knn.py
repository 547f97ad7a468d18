"""Exact, chunked k-nearest-neighbour search in torch (CPU or CUDA).

Why: re-identification metrics rank every query against galleries of up to ~200,000 x 2,048
features. A full Q x G distance matrix does not fit in memory, and `torch.topk` picks an
arbitrary member among tied distances, which makes Recall@k depend on the hardware. Here the
gallery is streamed in chunks, a running top-k is merged per chunk, and ties are broken by the
lower gallery index, so results are exact and deterministic.

Precision: distances use ||q||^2 - 2 q.g + ||g||^2 (one GEMM per chunk) clamped at 0. In
float32 that loses ~1e-7 relative precision, so two neighbours whose squared distances differ
by less than that may swap; pass `dtype=torch.float64` when exact ranks matter more than speed.
On CUDA keep `torch.backends.cuda.matmul.allow_tf32` off (the default) or ranks get coarser.
"""

from __future__ import annotations

import torch
from torch import Tensor

from deid.errors import unknown_name

METRICS = ("l2", "cosine")


def _check_inputs(queries: Tensor, gallery: Tensor, k: int, exclude: Tensor | None) -> None:
    for name, x in (("queries", queries), ("gallery", gallery)):
        if not isinstance(x, Tensor) or x.ndim != 2:
            raise ValueError(f"{name} must be a 2-D tensor (N, D), got {getattr(x, 'shape', x)}")
        if not x.is_floating_point():
            raise ValueError(f"{name} must be a floating point tensor, got dtype {x.dtype}")
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"queries have dimension {queries.shape[1]} but gallery has {gallery.shape[1]}"
        )
    if queries.device != gallery.device:
        raise ValueError(f"queries on {queries.device} but gallery on {gallery.device}")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    available = gallery.shape[0]
    if exclude is not None:
        if exclude.shape != (queries.shape[0],) or exclude.dtype != torch.long:
            raise ValueError(
                f"exclude must be a long tensor of shape ({queries.shape[0]},), "
                f"got {exclude.dtype} {tuple(exclude.shape)}"
            )
        if bool(((exclude < -1) | (exclude >= gallery.shape[0])).any()):
            raise ValueError("exclude holds gallery indices in [0, G) or -1 (nothing excluded)")
        available -= int(bool((exclude >= 0).any()))
    if k > available:
        raise ValueError(f"k={k} but only {available} gallery items can be returned per query")
    for name, x in (("queries", queries), ("gallery", gallery)):
        # In row blocks: a (G, D) boolean mask of a 200,000 x 2,048 gallery would be 400 MB.
        if not all(bool(torch.isfinite(block).all()) for block in x.split(4096)):
            raise ValueError(f"{name} contain NaN or infinite values")


def _lexsorted(dist: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
    """Sort each row by (distance, index): index first, then a stable sort on distance."""
    by_index = torch.argsort(idx, dim=1)
    dist, idx = dist.gather(1, by_index), idx.gather(1, by_index)
    by_dist = torch.sort(dist, dim=1, stable=True).indices
    return dist.gather(1, by_dist), idx.gather(1, by_dist)


def _chunk_topk(dist: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k smallest of each row, lexicographically by (distance, column), sorted.

    `torch.topk` returns the right values but an arbitrary subset of columns tied at the k-th
    value; rows with such a boundary tie are redone with a full stable sort (rare).
    """
    values, columns = torch.topk(dist, k, dim=1, largest=False, sorted=True)
    boundary_tie = (dist <= values[:, -1:]).sum(dim=1) > k
    if bool(boundary_tie.any()):
        rows = boundary_tie.nonzero().squeeze(1)
        full = torch.sort(dist[rows], dim=1, stable=True)
        values[rows], columns[rows] = full.values[:, :k], full.indices[:, :k]
    return _lexsorted(values, columns)


def _distances(q: Tensor, q_sq: Tensor, g: Tensor, g_sq: Tensor, metric: str) -> Tensor:
    """Squared L2 (or 1 - cosine on pre-normalised rows) of a query chunk to a gallery chunk."""
    if metric == "cosine":
        return torch.mm(q, g.T).neg_().add_(1.0).clamp_(min=0.0)
    dist = torch.addmm(g_sq.unsqueeze(0), q, g.T, alpha=-2.0)
    return dist.add_(q_sq.unsqueeze(1)).clamp_(min=0.0)


def _prepare(x: Tensor, metric: str, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    x = x.to(dtype)
    if metric == "cosine":
        x = torch.nn.functional.normalize(x, dim=1, eps=1e-12)
    return x, (x * x).sum(dim=1)


@torch.no_grad()
def chunked_topk(
    queries: Tensor,
    gallery: Tensor,
    k: int,
    *,
    metric: str = "l2",
    exclude: Tensor | None = None,
    query_chunk: int = 2048,
    gallery_chunk: int = 8192,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """Exact k nearest gallery rows of every query row.

    Args:
        queries: (Q, D) float tensor.
        gallery: (G, D) float tensor on the same device.
        k: neighbours per query (at most G, or G - 1 when anything is excluded).
        metric: "l2" (Euclidean) or "cosine" (1 - cosine similarity).
        exclude: optional (Q,) long tensor, the gallery index to leave out for each query
            (-1 = none), e.g. the query's own source image.
        query_chunk, gallery_chunk: block sizes; peak extra memory is about
            (query_chunk + D) * gallery_chunk * itemsize + query_chunk * gallery_chunk
            bytes (~210 MB for the defaults, D = 2,048 and float32).
        dtype: compute precision, float32 (fast) or float64 (exact ranks).

    Returns:
        (distances, indices), both (Q, k), ascending by distance, ties broken by the lower
        gallery index. Distances are Euclidean for "l2", 1 - cos for "cosine", in `dtype`.
    """
    if metric not in METRICS:
        raise unknown_name("metric", metric, METRICS, ValueError)
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    if query_chunk < 1 or gallery_chunk < 1:
        raise ValueError("query_chunk and gallery_chunk must be positive")
    _check_inputs(queries, gallery, k, exclude)
    device, n_queries = queries.device, queries.shape[0]
    if exclude is not None:
        exclude = exclude.to(device)

    best_d = torch.empty(n_queries, 0, dtype=dtype, device=device)
    best_i = torch.empty(n_queries, 0, dtype=torch.long, device=device)
    if n_queries == 0:
        return best_d.new_empty(0, k), best_i.new_empty(0, k)
    for g_start in range(0, gallery.shape[0], gallery_chunk):
        g, g_sq = _prepare(gallery[g_start : g_start + gallery_chunk], metric, dtype)
        width = g.shape[0]
        k_chunk = min(k, width)
        new_d, new_i = [], []
        for q_start in range(0, n_queries, query_chunk):
            q, q_sq = _prepare(queries[q_start : q_start + query_chunk], metric, dtype)
            dist = _distances(q, q_sq, g, g_sq, metric)
            if exclude is not None:
                local = exclude[q_start : q_start + query_chunk] - g_start
                rows = ((local >= 0) & (local < width)).nonzero().squeeze(1)
                dist[rows, local[rows]] = float("inf")
            values, columns = _chunk_topk(dist, k_chunk)
            new_d.append(values)
            new_i.append(columns + g_start)
        # Everything kept so far has a lower index than this chunk, so a stable sort on
        # distance of [kept, new] keeps the (distance, index) order.
        merged_d = torch.cat([best_d, torch.cat(new_d)], dim=1)
        merged_i = torch.cat([best_i, torch.cat(new_i)], dim=1)
        order = torch.sort(merged_d, dim=1, stable=True).indices[:, :k]
        best_d, best_i = merged_d.gather(1, order), merged_i.gather(1, order)
    if metric == "l2":
        best_d = best_d.sqrt()
    return best_d, best_i
