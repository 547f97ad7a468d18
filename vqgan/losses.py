"""VQGAN losses as pure functions: networks and tensors in, `(loss, logs)` out.

Nothing here owns a network or a step counter (taming's `VQLPIPSWithDiscriminator` owned
both). The training module passes its own step counter for the discriminator start.
Every `logs` dict holds detached scalars, keyed without a split prefix.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.nn import functional as F

Logs = dict[str, Tensor]
GAN_KINDS = ("hinge", "vanilla")


def _check_gan(kind: str) -> None:
    if kind not in GAN_KINDS:
        raise ValueError(f"GAN loss must be one of {GAN_KINDS}, got {kind!r}")


def reconstruction_loss(
    inputs: Tensor,
    reconstructions: Tensor,
    perceptual: Callable[[Tensor, Tensor], Tensor] | None = None,
    *,
    pixel_weight: float = 1.0,
    perceptual_weight: float = 1.0,
) -> tuple[Tensor, Logs]:
    """Mean of pixel_weight * |x - x_rec| + perceptual_weight * perceptual(x, x_rec) (taming's nll).

    `perceptual` returns one distance per image ([B] or [B, 1, 1, 1]); None means no term.
    """
    l1 = torch.abs(inputs - reconstructions).mean()
    loss = pixel_weight * l1
    p_loss = torch.zeros((), device=inputs.device)
    if perceptual is not None and perceptual_weight > 0:
        p_loss = perceptual(inputs, reconstructions).mean()
        loss = loss + perceptual_weight * p_loss
    return loss, {"rec_loss": loss.detach(), "l1_loss": l1.detach(), "p_loss": p_loss.detach()}


def generator_gan_loss(logits_fake: Tensor, kind: str = "hinge") -> tuple[Tensor, Logs]:
    """Generator side. hinge: -mean(D(fake)) (taming uses this for both kinds);
    vanilla: the non-saturating mean(softplus(-D(fake)))."""
    _check_gan(kind)
    loss = -torch.mean(logits_fake) if kind == "hinge" else F.softplus(-logits_fake).mean()
    return loss, {"g_loss": loss.detach()}


def discriminator_gan_loss(
    logits_real: Tensor, logits_fake: Tensor, kind: str = "hinge"
) -> tuple[Tensor, Logs]:
    """Discriminator side, halved as in taming. hinge: relu(1 - real) + relu(1 + fake);
    vanilla: softplus(-real) + softplus(fake)."""
    _check_gan(kind)
    if kind == "hinge":
        real, fake = F.relu(1.0 - logits_real).mean(), F.relu(1.0 + logits_fake).mean()
    else:
        real, fake = F.softplus(-logits_real).mean(), F.softplus(logits_fake).mean()
    loss = 0.5 * (real + fake)
    logs = {
        "disc_loss": loss.detach(),
        "logits_real": logits_real.detach().mean(),
        "logits_fake": logits_fake.detach().mean(),
    }
    return loss, logs


def discriminator_active(step: int, disc_start: int) -> bool:
    """The discriminator (and its term in the generator loss) acts from step `disc_start` on."""
    return step >= disc_start


def adaptive_weight(
    rec_loss: Tensor,
    g_loss: Tensor,
    last_layer: Tensor,
    *,
    disc_weight: float,
    step: int,
    disc_start: int,
) -> Tensor:
    """||grad rec|| / (||grad g|| + 1e-4) on `last_layer`, clamped to [0, 1e4], times disc_weight.

    Zero (and no gradient computed) before `disc_start`. Balances the GAN term against the
    reconstruction term at the decoder's output layer (taming's calculate_adaptive_weight).
    The result is detached.
    """
    if not discriminator_active(step, disc_start):
        return torch.zeros((), device=last_layer.device)
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    weight = torch.norm(rec_grad) / (torch.norm(g_grad) + 1e-4)
    return torch.clamp(weight, 0.0, 1e4).detach() * disc_weight


def vqgan_generator_loss(
    rec_loss: Tensor,
    codebook_loss: Tensor,
    logits_fake: Tensor,
    last_layer: Tensor,
    *,
    step: int,
    disc_start: int,
    disc_weight: float = 0.8,
    codebook_weight: float = 1.0,
    gan: str = "hinge",
) -> tuple[Tensor, Logs]:
    """Autoencoder step: rec + adaptive_weight * gan + codebook_weight * codebook."""
    g_loss, logs = generator_gan_loss(logits_fake, gan)
    weight = adaptive_weight(
        rec_loss, g_loss, last_layer, disc_weight=disc_weight, step=step, disc_start=disc_start
    )
    loss = rec_loss + weight * g_loss + codebook_weight * codebook_loss
    logs.update(
        total_loss=loss.detach(),
        quant_loss=codebook_loss.detach(),
        d_weight=weight.detach(),
        disc_active=torch.tensor(float(discriminator_active(step, disc_start))),
    )
    return loss, logs


def vqgan_discriminator_loss(
    logits_real: Tensor, logits_fake: Tensor, *, step: int, disc_start: int, gan: str = "hinge"
) -> tuple[Tensor, Logs]:
    """Discriminator step; zero before `disc_start` (pass logits of detached fakes)."""
    loss, logs = discriminator_gan_loss(logits_real, logits_fake, gan)
    if not discriminator_active(step, disc_start):
        loss = loss * 0.0
        logs["disc_loss"] = loss.detach()
    return loss, logs


def segmentation_loss(
    logits: Tensor, onehot: Tensor, codebook_loss: Tensor, *, codebook_weight: float = 1.0
) -> tuple[Tensor, Logs]:
    """Condition stage: BCE-with-logits against the one-hot label map + codebook loss."""
    bce = F.binary_cross_entropy_with_logits(logits, onehot)
    loss = bce + codebook_weight * codebook_loss
    return loss, {
        "total_loss": loss.detach(),
        "bce_loss": bce.detach(),
        "quant_loss": codebook_loss.detach(),
    }


def corrupt_tokens(
    tokens: Tensor, pkeep: float, vocab_size: int, generator: torch.Generator | None = None
) -> Tensor:
    """Replace each token by a uniform random one with probability 1 - pkeep (taming's pkeep).

    Draws come from `generator` (on the tokens' device) so a seeded run repeats exactly.
    """
    if pkeep >= 1.0:
        return tokens
    keep = torch.rand(tokens.shape, generator=generator, device=tokens.device) < pkeep
    noise = torch.randint(
        vocab_size, tokens.shape, generator=generator, device=tokens.device, dtype=tokens.dtype
    )
    return torch.where(keep, tokens, noise)


def transformer_inputs(cond_tokens: Tensor, image_tokens: Tensor) -> Tensor:
    """The transformer's input: [condition tokens, image tokens] without the last token."""
    return torch.cat((cond_tokens, image_tokens), dim=1)[:, :-1]


def transformer_loss(logits: Tensor, image_tokens: Tensor, cond_length: int) -> tuple[Tensor, Logs]:
    """Cross-entropy on image tokens only.

    `logits` [B, Lc + Lz - 1, V] come from `transformer_inputs(c, z_maybe_corrupted)`; the
    output at position Lc - 1 + n predicts image token n. Targets are the clean tokens.
    """
    image_logits = logits[:, cond_length - 1 :]
    if image_logits.shape[1] != image_tokens.shape[1]:
        raise ValueError(
            f"{image_logits.shape[1]} image logits for {image_tokens.shape[1]} image tokens"
        )
    loss = F.cross_entropy(
        image_logits.reshape(-1, image_logits.shape[-1]), image_tokens.reshape(-1)
    )
    return loss, {"ce_loss": loss.detach()}
