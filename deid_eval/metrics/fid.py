"""FID and KID on pytorch-fid's Inception features (protocols.md section 4).

Why not torchmetrics' own FID: it resizes with antialiasing (since 1.8), truncates to uint8 and
uses eigenvalues instead of `sqrtm`, so its numbers are not pytorch-fid 0.3.0's. Here the
features come from `FIDInceptionV3` (pytorch-fid's network and resize) and the distance
follows pytorch-fid's recipe. The metrics keep torchmetrics' state pattern, so they sum
correctly across DDP ranks and can keep real-image statistics across `reset()`.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

SQRTM_EPS = 1e-6
MAX_IMAGINARY = 1e-3
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """|mu1 - mu2|^2 + tr(s1) + tr(s2) - 2 tr(sqrt(s1 s2)), pytorch-fid's numerics.

    A non-finite square root (singular product) is retried with 1e-6 added to both
    diagonals; an imaginary part of the diagonal up to 1e-3 is numerical noise and dropped.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1 = np.atleast_2d(sigma1).astype(np.float64)
    sigma2 = np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(
            f"mismatched statistics: means {mu1.shape} vs {mu2.shape}, "
            f"covariances {sigma1.shape} vs {sigma2.shape}"
        )
    root = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(root).all():
        warnings.warn(
            f"FID: singular covariance product; adding {SQRTM_EPS} to the diagonals",
            RuntimeWarning,
            stacklevel=2,
        )
        offset = np.eye(sigma1.shape[0]) * SQRTM_EPS
        root = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(root):
        imaginary = np.abs(np.diagonal(root).imag).max()
        if imaginary > MAX_IMAGINARY:
            raise ValueError(f"FID: sqrtm has an imaginary part of {imaginary:.3g} (> 1e-3)")
        root = root.real
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(root))
    # A distance is never negative; identical sets give round-off like -1e-9, shown as 0.
    return max(value, 0.0)


def images_to_unit_float(images: Tensor) -> Tensor:
    """uint8 [0, 255] or float [0, 1] (B, 3, H, W) -> float32 [0, 1], what the network takes."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.float() / 255
    if not images.is_floating_point():
        raise ValueError(f"expected uint8 or float images in [0, 1], got {images.dtype}")
    low, high = float(images.min()), float(images.max())
    if low < -1e-3 or high > 1 + 1e-3:  # [0, 255] or [-1, 1] floats would silently shift FID
        raise ValueError(f"float images must lie in [0, 1], got values in [{low:.3g}, {high:.3g}]")
    return images.float()


def _shallow_copy(state: Tensor | list[Tensor]) -> Tensor | list[Tensor]:
    return list(state) if isinstance(state, list) else state


class _InceptionFeatureMetric(Metric):
    """Shared part of FID and KID: owns the feature extractor and the real-stats reset rule."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    _real_states: tuple[str, ...] = ()

    def __init__(
        self,
        feature_extractor: nn.Module | None = None,
        num_features: int | None = None,
        reset_real_features: bool = True,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        if feature_extractor is None:
            from deid.features.fid_inception import FEATURE_DIM, load_fid_inception

            feature_extractor, num_features = load_fid_inception("cpu"), FEATURE_DIM
        self.feature_extractor = feature_extractor.eval().requires_grad_(False)
        if num_features is None:
            num_features = self._probe_num_features()
        self.num_features = int(num_features)
        self.reset_real_features = bool(reset_real_features)

    def _probe_num_features(self) -> int:
        """Feature width of an injected extractor, from one tiny forward pass."""
        device = next(self.feature_extractor.parameters(), torch.empty(0)).device
        with torch.no_grad():
            out = self.feature_extractor(torch.zeros(1, 3, 32, 32, device=device))
        return int(out.reshape(1, -1).shape[1])

    def features(self, images: Tensor) -> Tensor:
        """(B, D) float64 features of uint8 or [0, 1] float images."""
        images = images_to_unit_float(images)
        device = next(self.feature_extractor.parameters(), images).device
        with torch.no_grad():
            out = self.feature_extractor(images.to(device))
        return out.reshape(out.shape[0], -1).double()

    def train(self, mode: bool = True) -> _InceptionFeatureMetric:
        """Stay in eval mode: a LightningModule's `.train()` must not unfreeze BatchNorm."""
        super().train(mode)
        self.feature_extractor.eval()
        return self

    def update(self, images: Tensor, real: bool, *, is_features: bool = False) -> None:
        """Add (B, 3, H, W) uint8 or [0, 1] float images of the real or the fake set.

        With `is_features=True`, `images` are precomputed (B, D) features instead.
        """
        features = images if is_features else self.features(images)
        features = features.reshape(features.shape[0], -1).double()
        if features.shape[1] != self.num_features:
            raise ValueError(f"expected {self.num_features} features, got {features.shape[1]}")
        self._add(features, real)

    def update_features(self, features: Tensor, real: bool) -> None:
        """Add precomputed features (e.g. a cached real set); goes through `update` so that
        torchmetrics' update count and compute cache stay right."""
        self.update(features, real, is_features=True)

    def _add(self, features: Tensor, real: bool) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        """Clear fake statistics; keep real ones when `reset_real_features=False`."""
        if self.reset_real_features:
            super().reset()
            return
        # copy lists: torchmetrics' reset() clears list states in place
        kept = {name: _shallow_copy(getattr(self, name)) for name in self._real_states}
        super().reset()
        for name, value in kept.items():
            setattr(self, name, value)


class FID(_InceptionFeatureMetric):
    """Frechet Inception Distance from running float64 sums (no feature list is kept).

    update(images, real) takes (B, 3, H, W) uint8 or float [0, 1] images. Means and
    covariances equal `np.mean` / `np.cov(rowvar=False)` (ddof=1) of all features seen.
    Fewer samples than feature dimensions + 1 give a singular covariance: a warning, since
    FID is then dominated by the sqrtm regularisation and by N.
    """

    plot_lower_bound = 0.0
    _real_states = ("real_sum", "real_outer", "real_count")

    real_sum: Tensor
    real_outer: Tensor
    real_count: Tensor
    fake_sum: Tensor
    fake_outer: Tensor
    fake_count: Tensor

    def __init__(
        self,
        feature_extractor: nn.Module | None = None,
        num_features: int | None = None,
        reset_real_features: bool = True,
        **kwargs: object,
    ) -> None:
        super().__init__(feature_extractor, num_features, reset_real_features, **kwargs)
        d = self.num_features
        for kind in ("real", "fake"):
            zeros = torch.zeros(d, dtype=torch.float64)
            self.add_state(f"{kind}_sum", default=zeros, dist_reduce_fx="sum")
            self.add_state(f"{kind}_outer", default=zeros.new_zeros(d, d), dist_reduce_fx="sum")
            self.add_state(f"{kind}_count", default=torch.tensor(0), dist_reduce_fx="sum")

    def _add(self, features: Tensor, real: bool) -> None:
        kind = "real" if real else "fake"
        setattr(self, f"{kind}_sum", getattr(self, f"{kind}_sum") + features.sum(0))
        setattr(self, f"{kind}_outer", getattr(self, f"{kind}_outer") + features.T @ features)
        setattr(self, f"{kind}_count", getattr(self, f"{kind}_count") + features.shape[0])

    def statistics(self, real: bool) -> tuple[np.ndarray, np.ndarray]:
        """(mean, covariance with ddof=1) of the real or the fake features."""
        kind = "real" if real else "fake"
        n = int(getattr(self, f"{kind}_count"))
        if n < 2:
            raise ValueError(f"FID needs at least 2 {kind} images, got {n}")
        if n <= self.num_features:
            warnings.warn(
                f"FID: {n} {kind} samples for {self.num_features}-d features give a singular "
                "covariance; use at least 2,048 (and the same N for every method)",
                RuntimeWarning,
                stacklevel=2,
            )
        total = getattr(self, f"{kind}_sum").cpu().numpy()
        outer = getattr(self, f"{kind}_outer").cpu().numpy()
        mean = total / n
        cov = (outer - n * np.outer(mean, mean)) / (n - 1)
        return mean, cov

    def compute(self) -> Tensor:
        mu_real, sigma_real = self.statistics(real=True)
        mu_fake, sigma_fake = self.statistics(real=False)
        return torch.tensor(frechet_distance(mu_real, sigma_real, mu_fake, sigma_fake))


def polynomial_kernel(x: Tensor, y: Tensor) -> Tensor:
    """KID's kernel (x.y / d + 1)^3: degree 3, gamma 1/d, coef0 1."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def unbiased_mmd2(x: Tensor, y: Tensor) -> Tensor:
    """Unbiased MMD^2 of two equal-size samples: within-set sums skip the diagonal."""
    m = x.shape[0]
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (
        m * (m - 1)
    )
    return within - 2 * k_xy.sum() / (m * m)


def canonical_order(features: Tensor) -> Tensor:
    """Rows sorted by a fixed projection, so seeded subsets do not depend on update order.

    Why: DDP gathers ranks in rank order and `merge_state` appends the incoming state first;
    without this, KID would change with batch order and world size.
    """
    weights = torch.linspace(1, 2, features.shape[1], dtype=features.dtype)
    key = features @ weights.to(features.device)
    return features[torch.sort(key, stable=True).indices]


class KID(_InceptionFeatureMetric):
    """Kernel Inception Distance: mean and std of unbiased MMD^2 over random subsets.

    Keeps all features (cat states). compute() draws `subsets` subsets of
    min(`subset_size`, N_real, N_fake) features, without replacement within a subset, from a
    generator seeded with `seed`; features are put in a canonical order first, so the result
    depends on the feature sets only, not on batch order or the number of DDP ranks. The std is the population std
    (ddof=0) over subsets, as torchmetrics reports it.
    """

    _real_states = ("real_features",)

    real_features: list[Tensor] | Tensor
    fake_features: list[Tensor] | Tensor

    def __init__(
        self,
        feature_extractor: nn.Module | None = None,
        num_features: int | None = None,
        reset_real_features: bool = True,
        subsets: int = KID_SUBSETS,
        subset_size: int = KID_SUBSET_SIZE,
        seed: int = 0,
        **kwargs: object,
    ) -> None:
        super().__init__(feature_extractor, num_features, reset_real_features, **kwargs)
        self.subsets = int(subsets)
        self.subset_size = int(subset_size)
        self.seed = int(seed)
        self.add_state("real_features", default=[], dist_reduce_fx="cat")
        self.add_state("fake_features", default=[], dist_reduce_fx="cat")

    def _add(self, features: Tensor, real: bool) -> None:
        (self.real_features if real else self.fake_features).append(features)

    def compute(self) -> tuple[Tensor, Tensor]:
        """(KID mean, KID std) over the subsets."""
        real = canonical_order(dim_zero_cat(self.real_features))
        fake = canonical_order(dim_zero_cat(self.fake_features))
        size = min(self.subset_size, real.shape[0], fake.shape[0])
        if size < 2:
            raise ValueError(f"KID needs at least 2 real and 2 fake images, got {size}")
        generator = torch.Generator().manual_seed(self.seed)
        scores = []
        for _ in range(self.subsets):
            real_idx = torch.randperm(real.shape[0], generator=generator)[:size]
            fake_idx = torch.randperm(fake.shape[0], generator=generator)[:size]
            scores.append(
                unbiased_mmd2(real[real_idx.to(real.device)], fake[fake_idx.to(fake.device)])
            )
        values = torch.stack(scores)
        return values.mean(), values.std(unbiased=False)
