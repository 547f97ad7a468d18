"""LFW verification: TAR at FAR = 1e-3 and accuracy over ten folds (protocols.md section 1).

Why a module of its own: CIAGAN's Table 3 numbers come from the classic facenet evaluation
(threshold grid, strict `d < t`, `interp1d` on the training FAR curve). That code breaks on
SciPy >= 1.9 when the FAR curve has plateaus, so the interpolation is written here in the
closed form the protocol states, and every threshold is counted with `searchsorted` on sorted
distances instead of a Python loop over 4,000 thresholds.

Tie rules (stated because results depend on them):
- TAR@FAR threshold: on a FAR plateau the lower anchor is the *largest* grid threshold with
  F_lo and the upper anchor the *smallest* grid threshold with F_hi. If no training FAR exceeds
  the target but one equals it, the threshold is t_lo (the interpolation term is zero).
- Accuracy threshold: the *smallest* grid threshold among those with the best training
  accuracy (`np.argmax`, as in facenet's `calculate_roc`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

FAR_TARGET = 1e-3
# np.arange(0, 4, step) as in facenet: 4,000 / 400 points, the last one 3.999 / 3.99.
TAR_GRID = np.arange(0, 4, 0.001)
ACCURACY_GRID = np.arange(0, 4, 0.01)


@dataclass(frozen=True)
class LFWResult:
    """Per-fold numbers of one LFW evaluation; summaries as properties."""

    tar: np.ndarray  # VAL_k on each test fold at d < t*_k
    far: np.ndarray  # FAR_k on each test fold at d < t*_k
    thresholds: np.ndarray  # t*_k fitted on the other folds
    accuracy: np.ndarray  # verification accuracy on each test fold
    accuracy_thresholds: np.ndarray  # best-accuracy threshold fitted on the other folds

    @property
    def tar_mean(self) -> float:
        return float(np.mean(self.tar))

    @property
    def tar_std(self) -> float:
        """Population std (ddof=0), as the classic code and CIAGAN Table 3 report it."""
        return float(np.std(self.tar))

    @property
    def far_mean(self) -> float:
        return float(np.mean(self.far))

    @property
    def accuracy_mean(self) -> float:
        return float(np.mean(self.accuracy))

    @property
    def accuracy_std(self) -> float:
        return float(np.std(self.accuracy))


def count_below(sorted_values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many values are strictly below each threshold (the protocol's `d < t`)."""
    return np.searchsorted(sorted_values, thresholds, side="left")


def far_threshold(
    negative_distances: np.ndarray,
    far_target: float = FAR_TARGET,
    grid: np.ndarray = TAR_GRID,
) -> float:
    """Threshold t* reaching `far_target` on training negatives (protocol step 8)."""
    negatives = np.sort(np.asarray(negative_distances, dtype=np.float64))
    if negatives.size == 0:
        raise ValueError("the training folds hold no negative pairs; FAR is undefined")
    far = count_below(negatives, grid) / negatives.size
    if far.max() < far_target:
        return 0.0
    # FAR is non-decreasing along the grid, so the points <= target form a prefix.
    n_low = int(np.count_nonzero(far <= far_target))
    if n_low == 0:
        raise ValueError(
            f"training FAR at the smallest threshold {grid[0]} is already {far[0]:.4g} > "
            f"{far_target}; negative distances below the grid?"
        )
    lo = n_low - 1  # largest grid index whose FAR is the largest attained FAR <= target
    if lo == grid.size - 1:  # max FAR equals the target exactly: nothing to interpolate to
        return float(grid[lo])
    hi = lo + 1  # smallest grid index whose FAR is the smallest attained FAR > target
    f_lo, f_hi = far[lo], far[hi]
    return float(grid[lo] + (far_target - f_lo) / (f_hi - f_lo) * (grid[hi] - grid[lo]))


def accuracy_threshold(
    distances: np.ndarray, is_same: np.ndarray, grid: np.ndarray = ACCURACY_GRID
) -> float:
    """Smallest grid threshold with the best accuracy of `d < t` on these pairs."""
    distances = np.asarray(distances, dtype=np.float64)
    is_same = np.asarray(is_same, dtype=bool)
    positives = np.sort(distances[is_same])
    negatives = np.sort(distances[~is_same])
    true_accepts = count_below(positives, grid)
    true_rejects = negatives.size - count_below(negatives, grid)
    return float(grid[np.argmax(true_accepts + true_rejects)])


def _rates_below(
    distances: np.ndarray, is_same: np.ndarray, threshold: float
) -> tuple[float, float, float]:
    """(TAR, FAR, accuracy) of the decision `d < threshold`."""
    accept = distances < threshold
    positives = is_same.sum()
    negatives = is_same.size - positives
    true_accepts = np.count_nonzero(accept & is_same)
    false_accepts = np.count_nonzero(accept & ~is_same)
    tar = true_accepts / positives if positives else float("nan")
    far = false_accepts / negatives if negatives else float("nan")
    accuracy = (true_accepts + negatives - false_accepts) / is_same.size
    return float(tar), float(far), float(accuracy)


def lfw_verification(
    distances: np.ndarray | Tensor,
    is_same: np.ndarray | Tensor,
    folds: np.ndarray | Tensor,
    far_target: float = FAR_TARGET,
) -> LFWResult:
    """Protocol steps 7-10: per test fold, thresholds fitted on all other folds.

    `distances` are squared L2 distances of L2-normalised embeddings (0..4), `is_same` marks
    matched pairs and `folds` gives each pair's fold (pair index // 600 for pairs.txt).
    """
    distances = np.asarray(torch.as_tensor(distances).double().cpu(), dtype=np.float64)
    is_same = np.asarray(torch.as_tensor(is_same).bool().cpu(), dtype=bool)
    folds = np.asarray(torch.as_tensor(folds).long().cpu(), dtype=np.int64)
    if not distances.shape == is_same.shape == folds.shape or distances.ndim != 1:
        raise ValueError(
            f"distances, is_same and folds must be 1-D of equal length, got "
            f"{distances.shape}, {is_same.shape}, {folds.shape}"
        )
    if not np.isfinite(distances).all():
        raise ValueError("distances contain NaN or infinity")
    fold_ids = np.unique(folds)
    if fold_ids.size < 2:
        raise ValueError(f"need at least 2 folds to fit thresholds, got {fold_ids.size}")

    rows = []
    for fold in fold_ids:
        test = folds == fold
        train = ~test
        t_star = far_threshold(distances[train & ~is_same], far_target)
        t_acc = accuracy_threshold(distances[train], is_same[train])
        tar, far, _ = _rates_below(distances[test], is_same[test], t_star)
        _, _, accuracy = _rates_below(distances[test], is_same[test], t_acc)
        rows.append((tar, far, t_star, accuracy, t_acc))
    columns = np.asarray(rows, dtype=np.float64).T
    return LFWResult(*columns)


class LFWVerification(Metric):
    """TAR@FAR=1e-3 (and accuracy) over LFW's ten folds; states are concatenated pairs.

    `higher_is_better = False`: this project scores anonymizers, and a lower TAR means the
    anonymized second image no longer verifies against the first (CIAGAN Table 3).
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    distances: list[Tensor] | Tensor
    is_same: list[Tensor] | Tensor
    folds: list[Tensor] | Tensor

    def __init__(self, far_target: float = FAR_TARGET, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.far_target = float(far_target)
        self.add_state("distances", default=[], dist_reduce_fx="cat")
        self.add_state("is_same", default=[], dist_reduce_fx="cat")
        self.add_state("folds", default=[], dist_reduce_fx="cat")

    def update(self, distances: Tensor, is_same: Tensor, folds: Tensor) -> None:
        """Add pairs: distance, matched-pair flag and fold index per pair."""
        distances = torch.as_tensor(distances, dtype=torch.float64).reshape(-1)
        is_same = torch.as_tensor(is_same, dtype=torch.bool, device=distances.device)
        folds = torch.as_tensor(folds, dtype=torch.long, device=distances.device)
        if not distances.shape == is_same.reshape(-1).shape == folds.reshape(-1).shape:
            raise ValueError("distances, is_same and folds must have one entry per pair")
        self.distances.append(distances)
        self.is_same.append(is_same.reshape(-1))
        self.folds.append(folds.reshape(-1))

    def compute(self) -> dict[str, Tensor]:
        """Means over folds plus the per-fold thresholds (report them with the number)."""
        result = lfw_verification(
            dim_zero_cat(self.distances),
            dim_zero_cat(self.is_same),
            dim_zero_cat(self.folds),
            self.far_target,
        )
        return {
            "tar_mean": as_tensor(result.tar_mean),
            "tar_std": as_tensor(result.tar_std),
            "far_mean": as_tensor(result.far_mean),
            "accuracy_mean": as_tensor(result.accuracy_mean),
            "accuracy_std": as_tensor(result.accuracy_std),
            "thresholds": as_tensor(result.thresholds),
            "accuracy_thresholds": as_tensor(result.accuracy_thresholds),
        }


def as_tensor(value: float | np.ndarray) -> Tensor:
    """float64 tensors, so Lightning can log the numbers and nothing is rounded to float32."""
    return torch.as_tensor(value, dtype=torch.float64)
