"""minGPT as taming uses it: pre-LN blocks, separate key/query/value/proj, learned positions.

Names follow `taming.modules.transformer.mingpt.GPT` (`tok_emb`, `pos_emb`, `blocks.N.ln1`,
`blocks.N.attn.key/query/value/proj`, `blocks.N.mlp.0/2`, `ln_f`, `head` without bias). The
causal mask is computed, not stored: official checkpoints carry it as `blocks.N.attn.mask`,
which conversion checks and drops.

Two forwards:
- `forward(idx)`: the plain full forward (explicit masked softmax, the official arithmetic);
- `forward_with_cache(idx, cache)`: logits of new tokens given the keys/values of earlier ones,
  appending to a preallocated `KVCache`; what the fast sampler uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from vqgan.nets.config import GPTConfig


@dataclass
class KVCache:
    """Keys and values of the first `length` positions, per layer: [B, n_head, max_len, head]."""

    keys: list[Tensor]
    values: list[Tensor]
    length: int = 0

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[2]

    def reset(self) -> None:
        self.length = 0


class CausalSelfAttention(nn.Module):
    """Multi-head attention over earlier positions only."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        n_embd = config.n_embd
        self.n_head = config.n_head
        self.key = nn.Linear(n_embd, n_embd)
        self.query = nn.Linear(n_embd, n_embd)
        self.value = nn.Linear(n_embd, n_embd)
        self.attn_drop = nn.Dropout(config.attn_pdrop)
        self.resid_drop = nn.Dropout(config.resid_pdrop)
        self.proj = nn.Linear(n_embd, n_embd)

    def _heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, t, c = x.shape
        shape = (b, t, self.n_head, c // self.n_head)
        k = self.key(x).view(shape).transpose(1, 2)
        q = self.query(x).view(shape).transpose(1, 2)
        v = self.value(x).view(shape).transpose(1, 2)
        return q, k, v

    def forward(self, x: Tensor) -> Tensor:
        b, t, c = x.shape
        q, k, v = self._heads(x)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        att = att.masked_fill(~causal, float("-inf"))
        att = self.attn_drop(F.softmax(att, dim=-1))
        y = (att @ v).transpose(1, 2).contiguous().view(b, t, c)
        return self.resid_drop(self.proj(y))

    def forward_with_cache(self, x: Tensor, keys: Tensor, values: Tensor, start: int) -> Tensor:
        """Attend new positions [start, start + t) to all positions before and among them."""
        b, t, c = x.shape
        q, k, v = self._heads(x)
        end = start + t
        keys[:, :, start:end] = k
        values[:, :, start:end] = v
        past_k, past_v = keys[:, :, :end], values[:, :, :end]
        if t == 1:
            y = F.scaled_dot_product_attention(q, past_k, past_v)
        elif start == 0:
            y = F.scaled_dot_product_attention(q, past_k, past_v, is_causal=True)
        else:
            rows = torch.arange(start, end, device=x.device)[:, None]
            mask = torch.arange(end, device=x.device)[None, :] <= rows
            y = F.scaled_dot_product_attention(q, past_k, past_v, attn_mask=mask)
        return self.proj(y.transpose(1, 2).contiguous().view(b, t, c))


class Block(nn.Module):
    """x + attn(ln1(x)), then x + mlp(ln2(x)) with a 4x GELU MLP."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd)
        self.ln2 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.mlp = nn.Sequential(
            nn.Linear(config.n_embd, 4 * config.n_embd),
            nn.GELU(),
            nn.Linear(4 * config.n_embd, config.n_embd),
            nn.Dropout(config.resid_pdrop),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))

    def forward_with_cache(self, x: Tensor, keys: Tensor, values: Tensor, start: int) -> Tensor:
        x = x + self.attn.forward_with_cache(self.ln1(x), keys, values, start)
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Token ids [B, T] -> next-token logits [B, T, vocab_size], T <= block_size.

    In the conditional model condition and image tokens share this one embedding table
    (taming adds no offset); they differ only by position.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = nn.Parameter(torch.zeros(1, config.block_size, config.n_embd))
        self.drop = nn.Dropout(config.embd_pdrop)
        self.blocks = nn.Sequential(*[Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """minGPT's init: N(0, 0.02) for linear and embedding weights, zero biases."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    @property
    def block_size(self) -> int:
        return self.config.block_size

    def _check_length(self, end: int) -> None:
        if end > self.config.block_size:
            raise ValueError(
                f"sequence of {end} tokens exceeds block_size {self.config.block_size}"
            )

    def forward(self, idx: Tensor) -> Tensor:
        t = idx.shape[1]
        self._check_length(t)
        x = self.drop(self.tok_emb(idx) + self.pos_emb[:, :t, :])
        return self.head(self.ln_f(self.blocks(x)))

    def new_cache(
        self, batch: int, max_len: int | None = None, *, dtype: torch.dtype | None = None
    ) -> KVCache:
        """An empty cache for `batch` sequences of up to `max_len` (default block_size) tokens."""
        max_len = self.config.block_size if max_len is None else max_len
        heads, width = self.config.n_head, self.config.n_embd // self.config.n_head
        like = {"dtype": dtype or self.pos_emb.dtype, "device": self.pos_emb.device}
        shape = (batch, heads, max_len, width)
        layers = range(self.config.n_layer)
        return KVCache(
            [torch.empty(shape, **like) for _ in layers],
            [torch.empty(shape, **like) for _ in layers],
        )

    def forward_with_cache(
        self, idx: Tensor, cache: KVCache, *, last_only: bool = False
    ) -> tuple[Tensor, KVCache]:
        """Logits for tokens `idx` [B, t] placed right after the `cache.length` cached ones.

        Returns ([B, t, V] logits, or [B, 1, V] with `last_only`) and the cache, extended by t.
        Mathematically equal to the matching rows of `forward` on the whole sequence; the
        sampler treats the small rounding difference explicitly. Eval only (no dropout).
        """
        start, t = cache.length, idx.shape[1]
        end = start + t
        self._check_length(end)
        if end > cache.capacity:
            raise ValueError(f"cache holds {cache.capacity} positions, {end} needed")
        x = self.tok_emb(idx) + self.pos_emb[:, start:end, :]
        x = x.to(cache.keys[0].dtype)
        for layer, block in enumerate(self.blocks):
            x = block.forward_with_cache(x, cache.keys[layer], cache.values[layer], start)
        cache.length = end
        if last_only:
            x = x[:, -1:]
        return self.head(self.ln_f(x)), cache
