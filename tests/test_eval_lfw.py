"""LFW TAR@FAR and accuracy against a plain loop written straight from protocols.md section 1."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deid_eval.metrics.lfw import LFWVerification, far_threshold, lfw_verification

N_FOLDS, N_POS, N_NEG = 10, 300, 300


# ---------------------------------------------------------------- reference: the protocol text
def reference_far_threshold(train_negatives: np.ndarray) -> float:
    """Step 8, one threshold at a time."""
    grid = [i * 0.001 for i in range(4000)]
    fars = [np.count_nonzero(train_negatives < t) / len(train_negatives) for t in grid]
    if max(fars) < 1e-3:
        return 0.0
    f_lo = max(f for f in fars if f <= 1e-3)
    t_lo = max(t for t, f in zip(grid, fars, strict=True) if f == f_lo)
    f_hi = min(f for f in fars if f > 1e-3)
    t_hi = min(t for t, f in zip(grid, fars, strict=True) if f == f_hi)
    return t_lo + (1e-3 - f_lo) / (f_hi - f_lo) * (t_hi - t_lo)


def reference_accuracy_threshold(distances: np.ndarray, is_same: np.ndarray) -> float:
    """Best training accuracy on the 0.01 grid; the first (smallest) threshold wins ties."""
    best_t, best_acc = None, -1.0
    for t in [i * 0.01 for i in range(400)]:
        accuracy = np.mean((distances < t) == is_same)
        if accuracy > best_acc:
            best_t, best_acc = t, accuracy
    return best_t


def reference_lfw(distances: np.ndarray, is_same: np.ndarray, folds: np.ndarray) -> dict:
    tars, fars, thresholds, accuracies = [], [], [], []
    for k in range(N_FOLDS):
        test, train = folds == k, folds != k
        t_star = reference_far_threshold(distances[train & ~is_same])
        d, same = distances[test], is_same[test]
        tars.append(np.count_nonzero((d < t_star) & same) / np.count_nonzero(same))
        fars.append(np.count_nonzero((d < t_star) & ~same) / np.count_nonzero(~same))
        thresholds.append(t_star)
        t_acc = reference_accuracy_threshold(distances[train], is_same[train])
        accuracies.append(np.mean((d < t_acc) == same))
    return {
        "tar_mean": np.mean(tars),
        "tar_std": np.std(tars),
        "far_mean": np.mean(fars),
        "accuracy_mean": np.mean(accuracies),
        "accuracy_std": np.std(accuracies),
        "thresholds": np.array(thresholds),
    }


# ---------------------------------------------------------------- synthetic pair sets
def make_pairs(kind: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """10 folds of 300 matched + 300 mismatched pairs, laid out like pairs.txt."""
    rng = np.random.default_rng(seed)
    positives = rng.normal(0.7, 0.25, size=(N_FOLDS, N_POS))
    negatives = rng.normal(1.7, 0.3, size=(N_FOLDS, N_NEG))
    if kind == "quantised":  # FAR plateaus, and many distances exactly on grid points
        positives = np.round(positives, 2)
        negatives = np.round(negatives * 50) / 50
    elif kind == "ties":  # one big jump: 40 negatives per fold at one distance
        negatives[:, :40] = 0.9
        positives[:, :100] = 0.9
    elif kind == "on_grid":  # distances bit-equal to grid points: strict < matters
        grid = np.arange(0, 4, 0.001)
        negatives = grid[np.clip(np.round(negatives * 1000), 0, 3999).astype(int)]
        positives = grid[np.clip(np.round(positives * 1000), 0, 3999).astype(int)]
    elif kind == "far_never_reached":  # <= 2 training negatives below 4: max FAR < 1e-3
        negatives[:] = 4.5
        negatives[0, 0] = 0.5
        negatives[1, 0] = 0.6
    elif kind == "far_reached_once":  # only fold 0 holds low negatives: its own t* is 0
        negatives[:] = 4.5
        negatives[0, :3] = [0.5, 0.6, 0.7]
    elif kind != "continuous":
        raise ValueError(kind)
    positives, negatives = np.clip(positives, 0, 4), np.clip(negatives, 0, 4.5)
    distances = np.concatenate([positives, negatives], axis=1).reshape(-1)
    is_same = np.tile(np.repeat([True, False], [N_POS, N_NEG]), N_FOLDS)
    folds = np.repeat(np.arange(N_FOLDS), N_POS + N_NEG)
    return distances, is_same, folds


KINDS = ["continuous", "quantised", "ties", "on_grid", "far_never_reached", "far_reached_once"]


@pytest.fixture(scope="module", params=KINDS)
def case(request: pytest.FixtureRequest) -> tuple:
    distances, is_same, folds = make_pairs(request.param)
    return request.param, distances, is_same, folds, reference_lfw(distances, is_same, folds)


def test_matches_protocol_loop(case: tuple) -> None:
    kind, distances, is_same, folds, expected = case
    result = lfw_verification(distances, is_same, folds)
    np.testing.assert_allclose(result.thresholds, expected["thresholds"], rtol=0, atol=1e-12)
    for name in ("tar_mean", "tar_std", "far_mean", "accuracy_mean", "accuracy_std"):
        assert getattr(result, name) == pytest.approx(expected[name], abs=1e-12), (kind, name)


def test_case_features_are_present() -> None:
    """The synthetic sets really have plateaus, on-grid ties and the t* = 0 branch."""
    distances, is_same, folds = make_pairs("quantised")
    train_neg = np.sort(distances[(folds != 0) & ~is_same])
    far = np.searchsorted(train_neg, np.arange(0, 4, 0.001)) / train_neg.size
    assert np.count_nonzero(np.diff(far) == 0) > 3000
    assert len(np.unique(far[far <= 1e-3])) > 1  # a non-zero F_lo on a plateau

    result = lfw_verification(*make_pairs("far_never_reached"))
    assert np.all(result.thresholds == 0.0) and np.all(result.tar == 0.0)
    result = lfw_verification(*make_pairs("far_reached_once"))
    assert result.thresholds[0] == 0.0  # its training folds hold no low negative
    # F_lo = 2/2700 up to t_lo = 0.699; F_hi = 3/2700 from t_hi = 0.700 (grid 0.7 > 0.7 float)
    # t* = 0.699 + (1e-3 - 2/2700) / (1/2700) * 0.001 = 0.699 + 0.7 * 0.001
    np.testing.assert_allclose(result.thresholds[1:], 0.6997, rtol=0, atol=1e-9)

    plain = lfw_verification(*make_pairs("continuous"))
    assert 0.5 < plain.tar_mean < 1 and 0 < plain.far_mean < 0.01
    assert 0.9 < plain.accuracy_mean < 1


def test_far_threshold_edges() -> None:
    # max FAR exactly the target: no F_hi, t* = t_lo = the largest grid point
    negatives = np.full(1000, 4.2)
    negatives[0] = 1.0
    assert far_threshold(negatives) == pytest.approx(3.999, abs=1e-12)
    # 1,000 negatives 0.0005 apart from 1.0: FAR reaches 1e-3 at t = 1.001 (d=1.0 < t)
    negatives = 1.0 + 0.0005 * np.arange(1000)
    t = far_threshold(negatives)
    assert t == pytest.approx(reference_far_threshold(negatives), abs=1e-12)
    assert 1.0 < t <= 1.001


def test_metric_batched_equals_single_pass_and_merge() -> None:
    distances, is_same, folds = make_pairs("quantised", seed=3)
    one = LFWVerification()
    one.update(torch.from_numpy(distances), torch.from_numpy(is_same), torch.from_numpy(folds))
    expected = one.compute()

    batched = LFWVerification()
    order = np.random.default_rng(0).permutation(distances.size)  # order must not matter
    for chunk in np.array_split(order, 7):
        batched.update(distances[chunk], is_same[chunk], folds[chunk])
    half_a, half_b = LFWVerification(), LFWVerification()
    half_a.update(distances[order[:2500]], is_same[order[:2500]], folds[order[:2500]])
    half_b.update(distances[order[2500:]], is_same[order[2500:]], folds[order[2500:]])
    half_a.merge_state(half_b)  # what DDP's cat-gather does

    for other in (batched.compute(), half_a.compute()):
        assert other.keys() == expected.keys()
        for name, value in expected.items():
            torch.testing.assert_close(other[name], value, rtol=0, atol=1e-12)
    assert expected["thresholds"].shape == (N_FOLDS,)
    assert LFWVerification.higher_is_better is False
