"""Silhouette k-NN re-identification (VQGAN de-identification paper, Table I; protocols.md 5).

Why: the paper asks whether an attacker holding all original person crops finds the original
of a de-identified person among its k nearest neighbours in ResNet-50 silhouette features.
Its Table I reports that re-identification rate (blur 99.8% ... VQGAN 35.8% at k=1, rising
with k); its text calls the complement "successful de-identification". Both are returned so a
result file cannot be misread. Distance: L2 on L2-normalised features, exact k-NN with ties
broken by the lower gallery index. Features come from `deid.features.silhouette`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from deid_eval.metrics.knn import chunked_topk
from deid_eval.metrics.reid import (
    ROLES,
    as_embeddings,
    as_index_vector,
    cat_state,
    check_ks,
    check_role,
    check_same_width,
    cumulative_hits,
    dedupe_by_id,
    source_positions,
)


class SilhouetteKNNReId(Metric):
    """Fraction of de-identified persons whose own original is among their k nearest originals.

    `update(features (N, D), ids (N,), role)`: role "query" = de-identified persons with `ids`
    the id of the original person they came from; role "gallery" = all original persons with
    their own (unique) ids. `compute()` returns `reid@k` (lower is better for privacy) and
    `deid_success@k` = 1 - reid@k for every k in `ks` (default 1..10), plus counts.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(
        self,
        ks: Sequence[int] = tuple(range(1, 11)),
        exact: bool = False,
        query_chunk: int = 2048,
        gallery_chunk: int = 8192,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.ks = check_ks(ks)
        self.knn_dtype = torch.float64 if exact else torch.float32
        self.query_chunk = query_chunk
        self.gallery_chunk = gallery_chunk
        for role in ROLES:
            self.add_state(f"{role}_features", default=[], dist_reduce_fx="cat")
            self.add_state(f"{role}_ids", default=[], dist_reduce_fx="cat")

    def update(self, features: Tensor, ids: Tensor, role: str) -> None:
        check_role(role)
        features = as_embeddings(features, "features")
        ids = as_index_vector(ids, features.shape[0], "ids", features.device)
        if bool((ids < 0).any()):
            raise ValueError("ids must be non-negative person ids")
        check_same_width([*self.query_features, *self.gallery_features], features, "feature")
        getattr(self, f"{role}_features").append(features)
        getattr(self, f"{role}_ids").append(ids)

    def compute(self) -> dict[str, Tensor]:
        gallery, queries = cat_state(self.gallery_features), cat_state(self.query_features)
        if gallery is None or queries is None:
            raise ValueError("SilhouetteKNNReId needs both query and gallery features")
        gallery, g_ids, _ = dedupe_by_id(gallery, cat_state(self.gallery_ids).long())
        source = source_positions(cat_state(self.query_ids).long(), g_ids)
        k = self.ks[-1]
        if k > len(gallery):
            raise ValueError(f"k={k} needs at least {k} gallery persons, got {len(gallery)}")
        normalise = torch.nn.functional.normalize
        _, neighbours = chunked_topk(
            normalise(queries.to(self.knn_dtype), dim=1),
            normalise(gallery.to(self.knn_dtype), dim=1),
            k,
            metric="l2",
            query_chunk=self.query_chunk,
            gallery_chunk=self.gallery_chunk,
            dtype=self.knn_dtype,
        )
        reid = cumulative_hits(neighbours == source[:, None], self.ks)
        scores = {f"reid@{k}": value for k, value in reid.items()}
        scores.update({f"deid_success@{k}": 1.0 - value for k, value in reid.items()})
        scores["num_queries"] = torch.tensor(len(queries), device=gallery.device)
        scores["num_gallery"] = torch.tensor(len(gallery), device=gallery.device)
        return scores
