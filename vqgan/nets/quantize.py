"""Vector quantizer with straight-through gradients and codebook usage statistics.

The two loss placements (taming#46, #57), with z the encoder output and e its nearest code:
  paper  (VQ-VAE, default for new training): ||sg[z] - e||^2 + beta * ||z - sg[e]||^2
  legacy (taming's default, `legacy=True`):  beta * ||sg[z] - e||^2 + ||z - sg[e]||^2
Use legacy when fine-tuning official weights, so their training objective is unchanged.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn


class Quantized(NamedTuple):
    """What one quantization returns.

    z_q: quantized latents [B, C, h, w] (gradients pass straight through to z);
    loss: the codebook + commitment loss (scalar);
    indices: code indices [B, h, w] (long);
    perplexity: exp(entropy) of the code histogram of this batch (1 .. n_embed);
    usage: share of the codebook used in this batch (0 .. 1).
    """

    z_q: Tensor
    loss: Tensor
    indices: Tensor
    perplexity: Tensor
    usage: Tensor


class VectorQuantizer(nn.Module):
    """Nearest-code quantization of [B, C, h, w] latents against `embedding.weight` [n, C]."""

    def __init__(self, n_embed: int, embed_dim: int, beta: float = 0.25, legacy: bool = False):
        super().__init__()
        self.n_embed = n_embed
        self.embed_dim = embed_dim
        self.beta = beta
        self.legacy = legacy
        self.embedding = nn.Embedding(n_embed, embed_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_embed, 1.0 / n_embed)

    def nearest(self, z_flat: Tensor) -> Tensor:
        """Index of the nearest code for each row of [N, C] (squared distance, taming's formula).

        ||z||^2 + ||e||^2 - 2 z·e with the same operations as taming, so ties break alike
        and converted official weights give identical indices.
        """
        weight = self.embedding.weight
        distances = (
            torch.sum(z_flat**2, dim=1, keepdim=True)
            + torch.sum(weight**2, dim=1)
            - 2 * torch.einsum("bd,dn->bn", z_flat, weight.t())
        )
        return torch.argmin(distances, dim=1)

    def loss(self, z: Tensor, z_q: Tensor) -> Tensor:
        """Codebook + commitment loss with the configured beta placement (module docstring)."""
        commitment = torch.mean((z_q.detach() - z) ** 2)
        codebook = torch.mean((z_q - z.detach()) ** 2)
        if self.legacy:
            return commitment + self.beta * codebook
        return codebook + self.beta * commitment

    @torch.no_grad()
    def usage_stats(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        """(perplexity, share of codes used) of a batch of indices."""
        counts = torch.bincount(indices.reshape(-1), minlength=self.n_embed).float()
        probs = counts / counts.sum().clamp(min=1.0)
        entropy = -(probs * torch.log(probs.clamp(min=1e-10))).sum()
        return torch.exp(entropy), (counts > 0).float().mean()

    def forward(self, z: Tensor) -> Quantized:
        b, c, h, w = z.shape
        if c != self.embed_dim:
            raise ValueError(f"quantizer expects {self.embed_dim} channels, got {c}")
        z_bhwc = z.permute(0, 2, 3, 1).contiguous()
        indices = self.nearest(z_bhwc.view(-1, c))
        z_q = self.embedding(indices).view(z_bhwc.shape)
        loss = self.loss(z_bhwc, z_q)
        z_q = z_bhwc + (z_q - z_bhwc).detach()  # straight-through estimator
        perplexity, usage = self.usage_stats(indices)
        z_q = z_q.permute(0, 3, 1, 2).contiguous()
        return Quantized(z_q, loss, indices.view(b, h, w), perplexity, usage)

    def embed(self, indices: Tensor) -> Tensor:
        """Codes of long indices [B, h, w] -> latents [B, C, h, w]."""
        return self.embedding(indices).permute(0, 3, 1, 2).contiguous()
