"""FID/KID: pytorch-fid's distance, np.cov statistics, DDP-style merging, the real network path."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from deid_eval.metrics.fid import FID, KID, frechet_distance


def pytorch_fid_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """The reference: pytorch-fid 0.3.0 on np.mean / np.cov(rowvar=False) statistics."""
    from pytorch_fid.fid_score import calculate_frechet_distance

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # its sqrtm(disp=False) on SciPy 1.16+
        return float(
            calculate_frechet_distance(
                real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False)
            )
        )


def random_features(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    """Non-negative, correlated, pool3-like features (ReLU outputs averaged over space)."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d)) / np.sqrt(d)
    return np.abs(rng.normal(size=(n, d)) @ mixing + shift)


class TinyFeatures(nn.Module):
    """A stand-in extractor: any image size -> 48 features, deterministic."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.linear = nn.Linear(48, 48)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.linear(self.pool(2 * images - 1).flatten(1)))


def random_images(n: int, seed: int, brightness: float = 1.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 24, 20, generator=generator) * brightness
    return (images * 255).round().to(torch.uint8)


# ---------------------------------------------------------------- the distance itself
def test_frechet_distance_matches_pytorch_fid() -> None:
    real, fake = random_features(3000, 64, seed=0), random_features(3000, 64, seed=1, shift=0.2)
    fid = FID(TinyFeatures(), num_features=64)
    fid.update_features(torch.from_numpy(real), real=True)
    fid.update_features(torch.from_numpy(fake), real=False)
    mu, sigma = fid.statistics(real=True)
    np.testing.assert_allclose(mu, real.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(real, rowvar=False), rtol=0, atol=1e-10)
    expected = pytorch_fid_distance(real, fake)
    assert expected > 1
    assert float(fid.compute()) == pytest.approx(expected, abs=1e-3)


def test_singular_covariance_warns_and_still_matches() -> None:
    real, fake = random_features(60, 128, seed=2), random_features(60, 128, seed=3, shift=0.1)
    fid = FID(TinyFeatures(), num_features=128)
    fid.update_features(torch.from_numpy(real), real=True)
    fid.update_features(torch.from_numpy(fake), real=False)
    with pytest.warns(RuntimeWarning, match="singular covariance"):
        value = float(fid.compute())
    assert np.isfinite(value)
    assert value == pytest.approx(pytorch_fid_distance(real, fake), abs=1e-3)


def test_fid_of_a_set_with_itself_is_zero() -> None:
    features = torch.from_numpy(random_features(500, 32, seed=4))
    fid = FID(TinyFeatures(), num_features=32)
    fid.update_features(features, real=True)
    fid.update_features(features, real=False)
    assert abs(float(fid.compute())) < 1e-6
    mu, sigma = fid.statistics(real=True)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0, abs=1e-6)


# ---------------------------------------------------------------- metric behaviour
def test_fid_image_updates_batched_merged_and_reset() -> None:
    real, fake = random_images(60, seed=0), random_images(60, seed=1, brightness=0.7)
    one = FID(TinyFeatures())
    assert one.num_features == 48  # probed from the injected network
    one.update(real, real=True)
    one.update(fake.float() / 255, real=False)  # float [0, 1] == uint8 path
    expected = one.compute()

    batched = FID(TinyFeatures())
    for chunk in real.split(7):
        batched.update(chunk, real=True)
    for chunk in fake.split(11):
        batched.update(chunk, real=False)
    torch.testing.assert_close(batched.compute(), expected, rtol=1e-9, atol=1e-9)

    half_a, half_b = FID(TinyFeatures()), FID(TinyFeatures())  # two "ranks"
    half_a.update(real[:25], real=True)
    half_a.update(fake[:40], real=False)
    half_b.update(real[25:], real=True)
    half_b.update(fake[40:], real=False)
    half_a.merge_state(half_b)
    torch.testing.assert_close(half_a.compute(), expected, rtol=1e-9, atol=1e-9)

    keep = FID(TinyFeatures(), reset_real_features=False)
    keep.update(real, real=True)
    keep.update(fake, real=False)
    keep.reset()
    assert int(keep.real_count) == 60 and int(keep.fake_count) == 0
    keep.update(fake, real=False)
    torch.testing.assert_close(keep.compute(), expected, rtol=1e-9, atol=1e-9)
    one.reset()
    assert int(one.real_count) == 0
    assert FID.higher_is_better is False and FID.full_state_update is False


def test_float_images_outside_unit_range_are_refused() -> None:
    fid = FID(TinyFeatures())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fid.update(random_images(2, seed=0).float(), real=True)  # 0..255 floats


def test_extractor_stays_in_eval_mode() -> None:
    fid = FID(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(1)), 4 * 30 * 30)
    fid.train()
    assert not fid.feature_extractor.training


# ---------------------------------------------------------------- KID
def reference_unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, written as explicit pair sums."""
    m, d = x.shape

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return (a @ b / d + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / (m * m)


def test_kid_matches_direct_mmd() -> None:
    real, fake = random_features(25, 16, seed=5), random_features(25, 16, seed=6, shift=0.3)
    expected = reference_unbiased_mmd2(real, fake)
    kid = KID(TinyFeatures(), num_features=16, subsets=5)
    kid.update_features(torch.from_numpy(real), real=True)
    kid.update_features(torch.from_numpy(fake), real=False)
    # subset size = min(1000, 25, 25): every subset is the whole set in another order
    mean, std = kid.compute()
    assert float(mean) == pytest.approx(expected, rel=1e-10)
    assert float(std) == pytest.approx(0, abs=1e-12)


def reference_full(real: np.ndarray, fake: np.ndarray) -> float:
    """Unbiased MMD^2 on unequal sizes: within-set means over i != j, cross mean over all."""
    d = real.shape[1]
    k_xx, k_yy = (real @ real.T / d + 1) ** 3, (fake @ fake.T / d + 1) ** 3
    k_xy = (real @ fake.T / d + 1) ** 3
    n, m = len(real), len(fake)
    within_x = (k_xx.sum() - np.trace(k_xx)) / (n * (n - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return within_x + within_y - 2 * k_xy.mean()


def test_kid_subsets_average_to_full_estimate_and_are_seeded() -> None:
    real, fake = random_features(80, 8, seed=7), random_features(60, 8, seed=8, shift=0.2)

    def run(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        kid = KID(TinyFeatures(), num_features=8, subsets=400, subset_size=20, seed=seed)
        kid.update_features(torch.from_numpy(real), real=True)
        kid.update_features(torch.from_numpy(fake), real=False)
        return kid.compute()

    mean, std = run(0)
    assert torch.equal(torch.stack(run(0)), torch.stack((mean, std)))
    assert not torch.equal(run(1)[0], mean)
    # a U-statistic averaged over random subsets estimates the full-sample U-statistic
    full = reference_full(real, fake)
    assert float(mean) == pytest.approx(full, abs=4 * float(std) / np.sqrt(400))
    assert float(std) > 0


def test_kid_merge_and_reset_real() -> None:
    real, fake = random_images(30, seed=2), random_images(30, seed=3, brightness=0.5)
    one = KID(TinyFeatures(), subsets=10, subset_size=10)
    one.update(real, real=True)
    one.update(fake, real=False)
    a, b = (
        KID(TinyFeatures(), subsets=10, subset_size=10),
        KID(TinyFeatures(), subsets=10, subset_size=10),
    )
    a.update(real[:12], real=True)
    a.update(fake[:20], real=False)
    b.update(real[12:], real=True)
    b.update(fake[20:], real=False)
    a.merge_state(b)  # appends a after b: the canonical order makes that irrelevant
    torch.testing.assert_close(torch.stack(a.compute()), torch.stack(one.compute()))

    keep = KID(TinyFeatures(), reset_real_features=False, subsets=10, subset_size=10)
    keep.update(real, real=True)
    keep.update(fake, real=False)
    keep.reset()
    assert len(keep.real_features) == 1 and len(keep.fake_features) == 0


# ---------------------------------------------------------------- the real offline network
@pytest.fixture(scope="module")
def real_images() -> torch.Tensor:
    """Three 192x192 crops: the astronaut's face, the cat, the coffee cup (uint8 B,3,H,W)."""
    from skimage import data

    crops = [data.astronaut()[40:232, 120:312], data.chelsea()[:192, 100:292], data.coffee()[:192]]
    crops[2] = crops[2][:, 200:392]
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()


def test_real_fid_inception_feature_path(real_images: torch.Tensor) -> None:
    """Feature path, not the FID value: metric states == the network called directly."""
    from deid.features.fid_inception import FIDInceptionV3

    fid = FID()  # default: the offline pytorch-fid weights
    network = fid.feature_extractor
    assert isinstance(network, FIDInceptionV3) and fid.num_features == 2048
    fid.train()  # a LightningModule's .train() must not switch BatchNorm to batch statistics
    with torch.no_grad():
        direct = network(real_images.float() / 255).double()
    assert direct.shape == (3, 2048) and torch.isfinite(direct).all() and (direct >= 0).all()
    assert not torch.allclose(direct[0], direct[1])

    fid.update(real_images[:2], real=True)  # uint8 path
    fid.update(real_images[2:].float() / 255, real=False)  # float path
    torch.testing.assert_close(fid.real_sum, direct[:2].sum(0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fid.real_outer, direct[:2].T @ direct[:2], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fid.fake_sum, direct[2], rtol=1e-5, atol=1e-5)
    assert int(fid.real_count) == 2 and int(fid.fake_count) == 1
