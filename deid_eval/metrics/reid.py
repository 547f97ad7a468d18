"""Re-identification Recall@k for any embedder (protocols.md section 2, CIAGAN Tables 1-2).

Why a metric of its own: the anonymization variant is easy to get subtly wrong. The gallery
holds the originals of the test identities, so each anonymized query's own source image must
be removed before asking "is the nearest neighbour the same identity?" (otherwise an identity
anonymizer scores 100% instead of the clean Recall@1), and the metric-learning variant must
mask the diagonal rather than drop the first column (duplicate images tie with the query).
Neighbours come from `chunked_topk`, which is exact and breaks ties by the lower gallery index.

The metric takes embeddings, not images: run any embedder (FaceNet, dlib, Proxy-NCA) first.
States are lists reduced by concatenation, so the result under DDP equals one process.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from deid.errors import unknown_name
from deid_eval.metrics.knn import METRICS, chunked_topk

ROLES = ("query", "gallery")
MODES = ("auto", "anonymization", "clean")


def check_role(role: str) -> str:
    if role not in ROLES:
        raise unknown_name("role", role, ROLES, ValueError)
    return role


def check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    """Sorted unique positive k values."""
    values = tuple(ks)
    if not values or any(not isinstance(k, int) or isinstance(k, bool) or k < 1 for k in values):
        raise ValueError(f"ks must be a non-empty sequence of positive ints, got {ks!r}")
    return tuple(sorted(set(values)))


def as_embeddings(x: Any, name: str = "embeddings") -> Tensor:
    """A finite (N, D) floating point tensor, detached."""
    x = torch.as_tensor(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (N, D), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating point tensor, got dtype {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contain NaN or infinite values")
    return x.detach()


def as_index_vector(x: Any, n: int, name: str, device: torch.device) -> Tensor:
    """An (n,) int64 tensor of labels or ids (integer dtypes only)."""
    x = torch.as_tensor(x, device=device)
    if x.dtype == torch.bool or x.is_floating_point() or x.is_complex():
        raise ValueError(f"{name} must be an integer tensor, got dtype {x.dtype}")
    if x.shape != (n,):
        raise ValueError(
            f"{name} must have shape ({n},) to match the embeddings, got {tuple(x.shape)}"
        )
    return x.long()


def check_same_width(seen: list[Tensor], new: Tensor, what: str = "embedding") -> None:
    """Every update must bring vectors as wide as the ones stored before."""
    if seen and seen[0].shape[1] != new.shape[1]:
        raise ValueError(
            f"{what} dimension {new.shape[1]} differs from the {seen[0].shape[1]} seen before"
        )


def cat_state(state: list[Tensor] | Tensor) -> Tensor | None:
    """Concatenated list state, or None when nothing was added (on any rank)."""
    if isinstance(state, list) and not state:
        return None
    joined = dim_zero_cat(state)
    return None if joined.numel() == 0 else joined


def dedupe_by_id(
    embeddings: Tensor, ids: Tensor, labels: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Keep the first row of every id >= 0 (rows with id -1 are kept as they are).

    Why: DDP samplers pad the last batch by repeating samples, which would put the same
    original in the gallery twice. Repeats must agree (same label, same embedding up to float
    noise); two different images under one id are a data bug and raise.
    """
    known = ids >= 0
    if not bool(known.any()):
        return embeddings, ids, labels
    positions = torch.arange(len(ids), device=ids.device)
    _, inverse = torch.unique(ids[known], return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), len(ids), device=ids.device)
    first = first.scatter_reduce(0, inverse, positions[known], reduce="amin")
    source = positions.clone()
    source[known] = first[inverse]
    if labels is not None and bool((labels != labels[source]).any()):
        bad = ids[(labels != labels[source])][0].item()
        raise ValueError(f"gallery id {bad} appears with two different labels")
    if not torch.allclose(embeddings, embeddings[source], rtol=1e-3, atol=1e-5):
        diff = ~torch.isclose(embeddings, embeddings[source], rtol=1e-3, atol=1e-5).all(dim=1)
        raise ValueError(f"gallery id {ids[diff][0].item()} appears with two different embeddings")
    keep = source == positions
    return embeddings[keep], ids[keep], None if labels is None else labels[keep]


def source_positions(query_ids: Tensor, gallery_ids: Tensor) -> Tensor:
    """Gallery row of each query's source id (gallery ids must be unique)."""
    sorted_ids, order = torch.sort(gallery_ids)
    if bool((sorted_ids[1:] == sorted_ids[:-1]).any()):
        raise ValueError("gallery ids must be unique")
    slot = torch.searchsorted(sorted_ids, query_ids).clamp_(max=len(sorted_ids) - 1)
    found = sorted_ids[slot] == query_ids
    if not bool(found.all()):
        missing = query_ids[~found][:5].tolist()
        raise ValueError(
            f"{int((~found).sum())} query source ids are not in the gallery (e.g. {missing}); "
            "ids must be the source image id of each query and the image id of each gallery item"
        )
    return order[slot]


def cumulative_hits(hits: Tensor, ks: tuple[int, ...]) -> dict[int, Tensor]:
    """Fraction of rows with a hit within the first k columns, for each k."""
    within = hits.int().cummax(dim=1).values.bool()
    return {k: within[:, k - 1].float().mean() for k in ks}


class ReIdRecall(Metric):
    """Recall@k of re-identification; the anonymization variant is lower-is-better.

    Modes:
        "anonymization": queries = anonymized images, gallery = originals of the test
            identities. `recall@k`: one of the k nearest gallery items, with the query's own
            source image removed, has the query's identity. `linkability@k`: the query's own
            original is among the k nearest (nothing removed).
        "clean": metric-learning Recall@k over the gallery only; every image is a query
            against all others, the diagonal masked.
        "auto" (default): "anonymization" when queries were given, else "clean".

    `update(embeddings (N, D), labels (N,) identity, ids (N,) image id, role)`: for queries
    `ids` is the source image id, for gallery items their own image id (unique; in clean
    mode ids may be None). `compute()` returns a dict of tensors with `recall@k` (and
    `linkability@k`), `chance` = 1 / #identities, `num_queries`, `num_gallery`.

    `higher_is_better` is False (torchmetrics makes it a class constant): it describes the
    anonymization variant; in clean mode a higher Recall@k means a better embedder.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(
        self,
        ks: Sequence[int] = (1,),
        mode: str = "auto",
        metric: str = "l2",
        exact: bool = False,
        query_chunk: int = 2048,
        gallery_chunk: int = 8192,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in MODES:
            raise unknown_name("mode", mode, MODES, ValueError)
        if metric not in METRICS:
            raise unknown_name("metric", metric, METRICS, ValueError)
        self.ks = check_ks(ks)
        self.mode = mode
        self.metric = metric
        self.knn_dtype = torch.float64 if exact else torch.float32
        self.query_chunk = query_chunk
        self.gallery_chunk = gallery_chunk
        for role in ROLES:
            for field in ("embeddings", "labels", "ids"):
                self.add_state(f"{role}_{field}", default=[], dist_reduce_fx="cat")

    def update(self, embeddings: Tensor, labels: Tensor, ids: Tensor | None, role: str) -> None:
        check_role(role)
        if role == "query" and self.mode == "clean":
            raise ValueError("mode='clean' takes gallery embeddings only (role='gallery')")
        embeddings = as_embeddings(embeddings)
        n, device = embeddings.shape[0], embeddings.device
        labels = as_index_vector(labels, n, "labels", device)
        if ids is None:
            if role == "query" or self.mode == "anonymization":
                raise ValueError(f"ids are required for {role} items in the anonymization mode")
            ids = torch.full((n,), -1, dtype=torch.long, device=device)
        ids = as_index_vector(ids, n, "ids", device)
        check_same_width([*self.query_embeddings, *self.gallery_embeddings], embeddings)
        getattr(self, f"{role}_embeddings").append(embeddings)
        getattr(self, f"{role}_labels").append(labels)
        getattr(self, f"{role}_ids").append(ids)

    def _knn(self, queries: Tensor, gallery: Tensor, k: int, exclude: Tensor | None) -> Tensor:
        return chunked_topk(
            queries,
            gallery,
            k,
            metric=self.metric,
            exclude=exclude,
            query_chunk=self.query_chunk,
            gallery_chunk=self.gallery_chunk,
            dtype=self.knn_dtype,
        )[1]

    def compute(self) -> dict[str, Tensor]:
        gallery = cat_state(self.gallery_embeddings)
        if gallery is None:
            raise ValueError(
                "ReIdRecall needs gallery embeddings: call update(..., role='gallery')"
            )
        labels = cat_state(self.gallery_labels).long()
        ids = cat_state(self.gallery_ids).long()
        gallery, ids, labels = dedupe_by_id(gallery, ids, labels)
        queries = cat_state(self.query_embeddings)
        mode = self.mode
        if mode == "auto":
            mode = "clean" if queries is None else "anonymization"
        if mode == "clean":
            scores = self._clean(gallery, labels)
            n_queries = len(gallery)
        else:
            if queries is None:
                raise ValueError("the anonymization mode needs query embeddings (role='query')")
            q_labels = cat_state(self.query_labels).long()
            q_ids = cat_state(self.query_ids).long()
            scores = self._anonymization(queries, q_labels, q_ids, gallery, labels, ids)
            n_queries = len(queries)
        device = gallery.device
        scores["chance"] = torch.tensor(1.0 / len(torch.unique(labels)), device=device)
        scores["num_queries"] = torch.tensor(n_queries, device=device)
        scores["num_gallery"] = torch.tensor(len(gallery), device=device)
        return scores

    def _clean(self, gallery: Tensor, labels: Tensor) -> dict[str, Tensor]:
        k = self.ks[-1]
        if k > len(gallery) - 1:
            raise ValueError(f"k={k} needs at least {k + 1} gallery items, got {len(gallery)}")
        diagonal = torch.arange(len(gallery), device=gallery.device)
        neighbours = self._knn(gallery, gallery, k, exclude=diagonal)
        recall = cumulative_hits(labels[neighbours] == labels[:, None], self.ks)
        return {f"recall@{k}": value for k, value in recall.items()}

    def _anonymization(
        self,
        queries: Tensor,
        q_labels: Tensor,
        q_ids: Tensor,
        gallery: Tensor,
        labels: Tensor,
        ids: Tensor,
    ) -> dict[str, Tensor]:
        if queries.shape[1] != gallery.shape[1]:
            raise ValueError(f"query dim {queries.shape[1]} != gallery dim {gallery.shape[1]}")
        if bool((ids < 0).any()):
            raise ValueError("the anonymization mode needs the image id of every gallery item")
        source = source_positions(q_ids, ids)
        if bool((labels[source] != q_labels).any()):
            bad = q_ids[labels[source] != q_labels][0].item()
            raise ValueError(f"query with source id {bad} has another label than its source")
        k = self.ks[-1]
        if k + 1 > len(gallery):
            raise ValueError(f"k={k} needs at least {k + 1} gallery items, got {len(gallery)}")
        # One search with k + 1 and nothing removed serves both variants: removing the source
        # from a (distance, index)-sorted list leaves the sorted list of the rest.
        neighbours = self._knn(queries, gallery, k + 1, exclude=None)
        is_source = neighbours == source[:, None]
        keep = ~is_source
        keep[keep.all(dim=1), -1] = False
        others = neighbours[keep].view(len(queries), k)
        recall = cumulative_hits(labels[others] == q_labels[:, None], self.ks)
        link = cumulative_hits(is_source[:, :k], self.ks)
        scores = {f"recall@{k}": value for k, value in recall.items()}
        scores.update({f"linkability@{k}": value for k, value in link.items()})
        return scores
