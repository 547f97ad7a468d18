"""CIAGAN losses against independent loop/NumPy references, plus invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ciagan.losses import (
    classification_loss,
    contrastive_loss,
    l1_reconstruction_loss,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    proxy_nca_loss,
)


def assert_logs_detached_scalars(logs):
    for key, value in logs.items():
        assert isinstance(value, torch.Tensor), key
        assert value.dim() == 0, key
        assert not value.requires_grad, key


def test_lsgan_known_values():
    real = torch.tensor([1.0, 0.0, 2.0], requires_grad=True)
    fake = torch.tensor([0.0, 1.0, -1.0, 0.5], requires_grad=True)
    loss, logs = lsgan_discriminator_loss(real, fake)
    # real: (0 + 1 + 1) / 3; fake: (0 + 1 + 1 + 0.25) / 4; not halved
    assert loss.item() == pytest.approx(2 / 3 + 2.25 / 4)
    assert logs["d_loss_real"].item() == pytest.approx(2 / 3)
    assert logs["d_loss_fake"].item() == pytest.approx(2.25 / 4)
    assert logs["d_score_real"].item() == pytest.approx(1.0)
    assert_logs_detached_scalars(logs)
    loss.backward()
    assert real.grad is not None and fake.grad is not None

    g_loss, g_logs = lsgan_generator_loss(torch.tensor([1.0, 3.0, -1.0]))
    assert g_loss.item() == pytest.approx((0 + 4 + 4) / 3)
    assert_logs_detached_scalars(g_logs)
    # perfect D and perfect G
    assert lsgan_discriminator_loss(torch.ones(5), torch.zeros(5))[0].item() == 0
    assert lsgan_generator_loss(torch.ones(5))[0].item() == 0


def contrastive_reference(a: np.ndarray, b: np.ndarray, same: np.ndarray, margin: float):
    total = 0.0
    for i in range(len(a)):
        sq = 0.0
        for j in range(a.shape[1]):
            sq += (float(a[i, j]) - float(b[i, j])) ** 2
        dist = math.sqrt(sq + 1e-9)
        if same[i]:
            total += 0.5 * dist**2
        else:
            total += 0.5 * max(0.0, margin - dist) ** 2
    return total / len(a)


@pytest.mark.parametrize("margin", [3.0, 1.0])
def test_contrastive_matches_loop_reference(margin):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(10, 7)).astype(np.float32)
    b = (a + rng.normal(scale=0.8, size=(10, 7))).astype(np.float32)
    same = np.array([1, 0, 1, 0, 0, 1, 1, 0, 0, 1], dtype=bool)
    loss, logs = contrastive_loss(
        torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(same), margin
    )
    assert loss.item() == pytest.approx(contrastive_reference(a, b, same, margin), rel=1e-5)
    assert set(logs) == {"contrastive", "dist_same", "dist_diff"}
    assert_logs_detached_scalars(logs)
    # float labels give the same value as bool labels
    float_loss, _ = contrastive_loss(
        torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(same.astype(np.float32)), margin
    )
    assert float_loss.item() == pytest.approx(loss.item())


def test_contrastive_invariants_and_margin():
    x = torch.randn(4, 5, requires_grad=True)
    # identical same-identity pairs: zero (up to the 1e-9 eps), with a finite gradient
    loss, _ = contrastive_loss(x, x.detach().clone(), torch.ones(4))
    assert loss.item() == pytest.approx(0.0, abs=1e-8)
    loss.backward()
    assert torch.isfinite(x.grad).all()
    # different pairs beyond the margin: zero
    a, b = torch.zeros(3, 2), torch.tensor([[3.5, 0.0], [0.0, 4.0], [-3.0, 3.0]])
    assert contrastive_loss(a, b, torch.zeros(3), margin=3.0)[0].item() == 0.0
    # inside the margin: 1/2 (m - D)^2; same pair at distance D: 1/2 D^2
    a, b = torch.zeros(1, 2), torch.tensor([[1.0, 0.0]])
    assert contrastive_loss(a, b, torch.zeros(1), margin=3.0)[0].item() == pytest.approx(2.0)
    assert contrastive_loss(a, b, torch.ones(1), margin=3.0)[0].item() == pytest.approx(0.5)
    assert "dist_diff" not in contrastive_loss(a, b, torch.ones(1))[1]
    with pytest.raises(ValueError):
        contrastive_loss(torch.zeros(2, 3), torch.zeros(2, 4), torch.ones(2))


def proxy_nca_reference(emb, labels, proxies, scale, include_positive):
    def unit(v):
        return v / np.sqrt((v**2).sum())

    losses = []
    for x, y in zip(emb, labels, strict=True):
        x = scale * unit(x.astype(np.float64))
        dists = [((x - scale * unit(p.astype(np.float64))) ** 2).sum() for p in proxies]
        numerator = math.exp(-dists[y])
        denominator = sum(math.exp(-d) for z, d in enumerate(dists) if include_positive or z != y)
        losses.append(-math.log(numerator / denominator))
    return float(np.mean(losses))


@pytest.mark.parametrize("include_positive", [True, False])
@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_proxy_nca_matches_loop_reference(include_positive, scale):
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(6, 8)).astype(np.float32)
    proxies = rng.normal(size=(5, 8)).astype(np.float32)
    labels = np.array([0, 4, 2, 2, 1, 3])
    loss, logs = proxy_nca_loss(
        torch.from_numpy(emb),
        torch.from_numpy(labels),
        torch.from_numpy(proxies),
        scale=scale,
        include_positive=include_positive,
    )
    expected = proxy_nca_reference(emb, labels, proxies, scale, include_positive)
    assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-5)
    assert_logs_detached_scalars(logs)


def test_proxy_nca_properties():
    proxies = torch.randn(4, 6, requires_grad=True)
    emb = torch.randn(3, 6, requires_grad=True)
    labels = torch.tensor([0, 3, 1])
    loss, logs = proxy_nca_loss(emb, labels, proxies)
    # scale of the embeddings does not matter (they are normalised)
    assert proxy_nca_loss(emb * 7.0, labels, proxies)[0].item() == pytest.approx(loss.item())
    # with the positive kept in the denominator the loss is a cross-entropy: > 0
    assert loss.item() > 0
    loss.backward()
    assert proxies.grad is not None and emb.grad is not None
    assert torch.isfinite(proxies.grad).all()
    # embeddings on their (orthogonal) proxies: perfect accuracy; without the positive in the
    # denominator the loss is negative: log(3 exp(-2 * 3^2)) = log(3) - 18
    orthogonal = torch.eye(4, 6)
    loss_np, logs_np = proxy_nca_loss(
        orthogonal[labels], labels, orthogonal, include_positive=False
    )
    assert logs_np["proxy_acc"].item() == 1.0
    assert loss_np.item() == pytest.approx(math.log(3) - 18, rel=1e-5)
    with pytest.raises(ValueError):
        proxy_nca_loss(emb, labels, torch.randn(4, 5))


def test_classification_loss_matches_log_softmax():
    logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], dtype=np.float32)
    labels = np.array([0, 1])
    expected = np.mean(
        [
            -(row[y] - math.log(sum(math.exp(v) for v in row)))
            for row, y in zip(logits, labels, strict=True)
        ]
    )
    loss, logs = classification_loss(torch.from_numpy(logits), torch.from_numpy(labels))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert logs["acc"].item() == 0.5
    assert_logs_detached_scalars(logs)


def test_l1_reconstruction_is_masked_mean():
    rng = np.random.default_rng(2)
    out = rng.normal(size=(2, 3, 4, 4)).astype(np.float32)
    target = rng.normal(size=(2, 3, 4, 4)).astype(np.float32)
    mask = (rng.random(size=(2, 1, 4, 4)) > 0.5).astype(np.float32)
    diffs = [
        abs(out[b, c, i, j] - target[b, c, i, j])
        for b in range(2)
        for c in range(3)
        for i in range(4)
        for j in range(4)
        if mask[b, 0, i, j]
    ]
    loss, logs = l1_reconstruction_loss(
        torch.from_numpy(out), torch.from_numpy(target), torch.from_numpy(mask)
    )
    assert loss.item() == pytest.approx(float(np.mean(diffs)), rel=1e-5)
    assert_logs_detached_scalars(logs)
    # a 3-channel mask gives the same; outside-mask differences do not count; empty mask -> 0
    full = torch.from_numpy(np.repeat(mask, 3, axis=1))
    assert l1_reconstruction_loss(torch.from_numpy(out), torch.from_numpy(target), full)[
        0
    ].item() == pytest.approx(loss.item())
    changed = torch.from_numpy(out) + 5 * (1 - torch.from_numpy(mask))
    assert l1_reconstruction_loss(changed, torch.from_numpy(target), torch.from_numpy(mask))[
        0
    ].item() == pytest.approx(loss.item(), rel=1e-5)
    zero = torch.zeros(2, 1, 4, 4)
    assert (
        l1_reconstruction_loss(torch.from_numpy(out), torch.from_numpy(target), zero)[0].item() == 0
    )
