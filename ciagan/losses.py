"""CIAGAN losses as pure functions.

Networks are run by the caller; these take their outputs. Each returns `(loss, logs)`: the
scalar to backpropagate and a dict of detached scalar tensors for logging.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

Logs = dict[str, Tensor]


def lsgan_discriminator_loss(real_scores: Tensor, fake_scores: Tensor) -> tuple[Tensor, Logs]:
    """Least-squares D loss: mean((real - 1)^2) + mean(fake^2).

    Not halved, like the official code (the LSGAN paper's 1/2 only rescales the learning rate).
    """
    loss_real = F.mse_loss(real_scores, torch.ones_like(real_scores))
    loss_fake = F.mse_loss(fake_scores, torch.zeros_like(fake_scores))
    loss = loss_real + loss_fake
    logs = {
        "d_loss": loss.detach(),
        "d_loss_real": loss_real.detach(),
        "d_loss_fake": loss_fake.detach(),
        "d_score_real": real_scores.detach().mean(),
        "d_score_fake": fake_scores.detach().mean(),
    }
    return loss, logs


def lsgan_generator_loss(fake_scores: Tensor) -> tuple[Tensor, Logs]:
    """Least-squares G loss: mean((fake - 1)^2)."""
    loss = F.mse_loss(fake_scores, torch.ones_like(fake_scores))
    return loss, {"g_adv": loss.detach(), "g_score_fake": fake_scores.detach().mean()}


def contrastive_loss(
    a: Tensor, b: Tensor, same: Tensor, margin: float = 3.0
) -> tuple[Tensor, Logs]:
    """Hadsell et al. 2006 as CIAGAN uses it (protocols.md 3).

    L = mean( 1/2 y D^2 + 1/2 (1 - y) max(0, margin - D)^2 ), D = sqrt(sum (a - b)^2 + 1e-9),
    y = `same` (1 for a same-identity pair, 0 otherwise; bool or float, shape (B,)).
    """
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"a and b must both be (B, dim), got {tuple(a.shape)}, {tuple(b.shape)}")
    y = same.to(a.dtype).reshape(-1)
    if y.shape[0] != a.shape[0]:
        raise ValueError(f"same must have {a.shape[0]} entries, got {same.shape[0]}")
    dist_sq = (a - b).pow(2).sum(dim=1) + 1e-9
    dist = dist_sq.sqrt()
    per_pair = 0.5 * y * dist_sq + 0.5 * (1 - y) * F.relu(margin - dist).pow(2)
    loss = per_pair.mean()
    logs: Logs = {"contrastive": loss.detach()}
    with torch.no_grad():
        is_same = y > 0.5
        if is_same.any():
            logs["dist_same"] = dist[is_same].mean()
        if (~is_same).any():
            logs["dist_diff"] = dist[~is_same].mean()
    return loss, logs


def proxy_nca_loss(
    embeddings: Tensor,
    labels: Tensor,
    proxies: Tensor,
    scale: float = 3.0,
    include_positive: bool = True,
) -> tuple[Tensor, Logs]:
    """Proxy-NCA (Movshovitz-Attias et al. 2017; protocols.md 3).

    Embeddings (B, dim) and proxies (C, dim) are L2-normalised and multiplied by `scale`;
    d = squared Euclidean distance (B, C). Per sample:
    include_positive=True:  -log( exp(-d_y) / sum_z exp(-d_z) )   (softmax over all proxies)
    include_positive=False: -log( exp(-d_y) / sum_{z != y} exp(-d_z) )   (the paper's form,
    which can go negative and needs at least 2 proxies). Mean over the batch.
    """
    if embeddings.dim() != 2 or proxies.dim() != 2 or embeddings.shape[1] != proxies.shape[1]:
        raise ValueError(
            f"embeddings (B, dim) and proxies (C, dim) must share dim, got "
            f"{tuple(embeddings.shape)} and {tuple(proxies.shape)}"
        )
    if not include_positive and proxies.shape[0] < 2:
        raise ValueError("include_positive=False needs at least 2 proxies")
    x = scale * F.normalize(embeddings, dim=1)
    p = scale * F.normalize(proxies, dim=1)
    # |x - p|^2 expanded (cheaper than broadcasting B x C x dim); clamp rounding negatives.
    d = (x.pow(2).sum(1, keepdim=True) + p.pow(2).sum(1)[None, :] - 2 * x @ p.t()).clamp_min(0)
    labels = labels.long()
    logits = -d
    positive = logits.gather(1, labels[:, None]).squeeze(1)
    if include_positive:
        denominator = torch.logsumexp(logits, dim=1)
    else:
        is_positive = F.one_hot(labels, proxies.shape[0]).bool()
        denominator = torch.logsumexp(logits.masked_fill(is_positive, float("-inf")), dim=1)
    loss = (denominator - positive).mean()
    with torch.no_grad():
        accuracy = (logits.argmax(dim=1) == labels).float().mean()
    return loss, {"proxy_nca": loss.detach(), "proxy_acc": accuracy}


def classification_loss(logits: Tensor, labels: Tensor) -> tuple[Tensor, Logs]:
    """Cross-entropy (classifier ablation; also the generator's loss toward a target label)."""
    loss = F.cross_entropy(logits, labels.long())
    with torch.no_grad():
        accuracy = (logits.argmax(dim=1) == labels).float().mean()
    return loss, {"ce": loss.detach(), "acc": accuracy}


def l1_reconstruction_loss(
    output: Tensor, target: Tensor, mask: Tensor, eps: float = 1e-8
) -> tuple[Tensor, Logs]:
    """Mean absolute error over the masked area: sum(|o - t| m) / sum(m), m broadcast over
    channels (mask (B, 1, H, W) or (B, C, H, W), values in [0, 1]); 0 for an empty mask."""
    weight = mask.to(output.dtype).expand_as(output)
    loss = ((output - target).abs() * weight).sum() / weight.sum().clamp_min(eps)
    return loss, {"l1": loss.detach()}
