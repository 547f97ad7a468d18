"""VQGAN losses (pure functions) and the offline perceptual modules."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from deid import weights
from deid.errors import MissingWeightError
from vqgan import losses
from vqgan.perceptual import (
    LPIPSVGG,
    PERCEPTUAL_KINDS,
    NoPerceptual,
    build_perceptual,
    lpips_head_weights,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


class ToyDecoder(nn.Module):
    """conv -> conv_out: the adaptive weight is measured on conv_out.weight."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.conv_out = nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.conv_out(torch.relu(self.conv(z)))


def test_adaptive_weight_equals_a_hand_computation() -> None:
    decoder = ToyDecoder()
    disc = nn.Conv2d(3, 1, 4, stride=2)
    x = torch.rand(2, 3, 8, 8)
    rec = decoder(torch.randn(2, 2, 8, 8))
    rec_loss, _ = losses.reconstruction_loss(x, rec)
    g_loss, _ = losses.generator_gan_loss(disc(rec))
    weight = losses.adaptive_weight(
        rec_loss, g_loss, decoder.conv_out.weight, disc_weight=0.8, step=10, disc_start=10
    )
    # by hand: dL/dW for both losses, the ratio of their norms
    grad_rec = torch.autograd.grad(rec_loss, decoder.conv_out.weight, retain_graph=True)[0]
    grad_g = torch.autograd.grad(g_loss, decoder.conv_out.weight, retain_graph=True)[0]
    norm_rec = grad_rec.pow(2).sum().sqrt()
    norm_g = grad_g.pow(2).sum().sqrt()
    assert torch.allclose(weight, 0.8 * norm_rec / (norm_g + 1e-4))
    assert not weight.requires_grad
    before = losses.adaptive_weight(
        rec_loss, g_loss, decoder.conv_out.weight, disc_weight=0.8, step=9, disc_start=10
    )
    assert before.item() == 0.0


def test_adaptive_weight_is_clamped() -> None:
    w = torch.ones(3, requires_grad=True)
    rec_loss, g_loss = (w * 1e6).sum(), (w * 1e-12).sum()
    weight = losses.adaptive_weight(rec_loss, g_loss, w, disc_weight=1.0, step=0, disc_start=0)
    assert weight.item() == pytest.approx(1e4)


def test_generator_loss_combines_terms_and_starts_with_the_discriminator() -> None:
    decoder = ToyDecoder()
    x = torch.rand(1, 3, 8, 8)
    rec = decoder(torch.randn(1, 2, 8, 8))
    rec_loss, _ = losses.reconstruction_loss(x, rec)
    codebook = torch.tensor(0.3)
    logits_fake = rec.mean(dim=1, keepdim=True)
    kwargs = dict(disc_start=5, disc_weight=0.8, codebook_weight=1.0)
    early, logs = losses.vqgan_generator_loss(
        rec_loss, codebook, logits_fake, decoder.conv_out.weight, step=4, **kwargs
    )
    assert torch.allclose(early, rec_loss + codebook)
    assert logs["d_weight"].item() == 0.0 and logs["disc_active"].item() == 0.0
    late, logs = losses.vqgan_generator_loss(
        rec_loss, codebook, logits_fake, decoder.conv_out.weight, step=5, **kwargs
    )
    g = -logits_fake.mean()
    assert torch.allclose(late, rec_loss + logs["d_weight"] * g + codebook)
    assert logs["d_weight"].item() > 0


def test_gan_losses_both_sides() -> None:
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.5])
    d_hinge, _ = losses.discriminator_gan_loss(real, fake, "hinge")
    assert d_hinge.item() == pytest.approx(0.5 * ((0 + 0.5) / 2 + (0 + 1.5) / 2))
    d_vanilla, _ = losses.discriminator_gan_loss(real, fake, "vanilla")
    expected = 0.5 * (F.softplus(-real).mean() + F.softplus(fake).mean())
    assert d_vanilla.item() == pytest.approx(expected.item())
    assert losses.generator_gan_loss(fake, "hinge")[0].item() == pytest.approx(0.75)
    g_vanilla = F.softplus(-fake).mean()
    assert losses.generator_gan_loss(fake, "vanilla")[0].item() == pytest.approx(g_vanilla.item())
    off, logs = losses.vqgan_discriminator_loss(real, fake, step=0, disc_start=1)
    assert off.item() == 0.0 and logs["disc_loss"].item() == 0.0
    with pytest.raises(ValueError, match="hinge"):
        losses.generator_gan_loss(fake, "wgan")


def test_reconstruction_loss_with_a_perceptual_term() -> None:
    x, y = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    half = lambda a, b: torch.full((a.shape[0],), 0.5)  # noqa: E731
    loss, logs = losses.reconstruction_loss(x, y, half, perceptual_weight=2.0)
    assert loss.item() == pytest.approx(1.0 + 2 * 0.5)
    assert logs["l1_loss"].item() == 1.0 and logs["p_loss"].item() == 0.5
    assert losses.reconstruction_loss(x, y, NoPerceptual())[0].item() == 1.0


def test_segmentation_loss_is_bce_on_one_hot_plus_codebook() -> None:
    labels = torch.randint(0, 5, (2, 4, 4))
    onehot = F.one_hot(labels, 5).permute(0, 3, 1, 2).float()
    logits = torch.randn(2, 5, 4, 4)
    loss, logs = losses.segmentation_loss(logits, onehot, torch.tensor(0.2), codebook_weight=0.5)
    assert loss.item() == pytest.approx(
        F.binary_cross_entropy_with_logits(logits, onehot).item() + 0.1
    )
    assert set(logs) == {"total_loss", "bce_loss", "quant_loss"}


def test_transformer_loss_counts_image_tokens_only() -> None:
    cond, image = torch.randint(0, 9, (2, 4)), torch.randint(0, 9, (2, 6))
    inputs = losses.transformer_inputs(cond, image)
    assert inputs.shape == (2, 9)
    logits = torch.randn(2, 9, 9, requires_grad=True)
    loss, _ = losses.transformer_loss(logits, image, cond_length=4)
    expected = F.cross_entropy(logits[:, 3:].reshape(-1, 9), image.reshape(-1))
    assert loss.item() == pytest.approx(expected.item())
    loss.backward()
    assert not logits.grad[:, :3].any()  # condition positions get no gradient


def test_pkeep_corruption_is_seeded_and_partial() -> None:
    tokens = torch.arange(1000) % 7
    a = losses.corrupt_tokens(tokens, 0.7, 50, torch.Generator().manual_seed(3))
    b = losses.corrupt_tokens(tokens, 0.7, 50, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    changed = (a != tokens).float().mean().item()
    assert 0.2 < changed < 0.4  # about 30%, minus random draws equal to the token
    assert losses.corrupt_tokens(tokens, 1.0, 50) is tokens


# ---------------------------------------------------------------- perceptual
def test_missing_vgg_is_a_one_line_error_never_a_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEID_HOME", str(tmp_path / "deid"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv(
        "DEID_ALLOW_DOWNLOAD", "1"
    )  # even opted in: build_perceptual never downloads
    monkeypatch.setattr(weights, "_download", lambda spec: pytest.fail("tried to download"))
    with pytest.raises(MissingWeightError) as err:
        build_perceptual("lpips_vgg")
    message = str(err.value)
    assert "\n" not in message
    assert "vgg16-397923af.pth" in message and "397923af8e79cdbb" in message
    assert "DEID_WEIGHT_VGG16_IMAGENET" in message


def test_vgg16_weight_entry_is_pinned() -> None:
    spec = weights.get_spec("vgg16_imagenet")
    assert spec.sha256 == "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0"
    assert spec.filename == "vgg16-397923af.pth"


def test_lpips_vgg_with_shipped_heads_and_a_user_vgg_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchvision.models.vgg import cfgs, make_layers

    heads = lpips_head_weights()  # from the lpips wheel, sha256-checked
    assert heads["lin4.model.1.weight"].shape == (1, 512, 1, 1)
    vgg_file = tmp_path / "vgg16-397923af.pth"  # a random trunk in torchvision's key layout
    trunk = make_layers(cfgs["D"]).state_dict()
    torch.save({f"features.{k}": v for k, v in trunk.items()}, vgg_file)
    spec = weights.get_spec("vgg16_imagenet")
    fake = weights.WeightSpec(**{**spec.__dict__, "sha256": weights.sha256_of(vgg_file)})
    monkeypatch.setattr(weights, "REGISTRY", {**weights.REGISTRY, "vgg16_imagenet": fake})
    monkeypatch.setenv("DEID_WEIGHT_VGG16_IMAGENET", str(vgg_file))
    monkeypatch.setenv("DEID_HOME", str(tmp_path / "deid"))
    module = build_perceptual("lpips_vgg")
    assert isinstance(module, LPIPSVGG) and module.name == "lpips_vgg"
    assert torch.equal(module.lins[2].weight, heads["lin2.model.1.weight"])
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).requires_grad_(True)
    d = module(x, y)
    assert d.shape == (2,) and torch.all(d > 0)
    assert torch.allclose(module(x, x), torch.zeros(2), atol=1e-6)
    d.sum().backward()
    assert y.grad is not None and not any(p.requires_grad for p in module.parameters())
    module.train()
    assert not module.training


def test_perceptual_kinds_have_names() -> None:
    assert PERCEPTUAL_KINDS == ("lpips_vgg", "fid_inception", "none")
    assert build_perceptual("none").name == "none"
    with pytest.raises(ValueError, match="lpips_vgg"):
        build_perceptual("alex")


def test_fid_inception_fallback_is_offline_and_differentiable() -> None:
    module = build_perceptual("fid_inception")
    assert module.name == "fid_inception"
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    y = (-x).requires_grad_(True)
    d = module(x, y)
    assert d.shape == (1,) and d.item() > 0
    assert module(x, x).abs().max().item() < 1e-6
    d.sum().backward()
    assert y.grad is not None
