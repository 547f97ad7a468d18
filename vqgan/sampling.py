"""Segmentation-conditioned raster-order sampling of image tokens, exact and fast.

taming's procedure (scripts/sample_conditional.py), for a latent grid of any size H x W:
for each position (i, j) in raster order, take the transformer's window (16 x 16 for the
COCO model) around it, clamped at the borders: top row r0 = clamp(i - 8, 0, H - 16), left
column c0 = clamp(j - 8, 0, W - 16); crop the same window of condition tokens; feed
[condition window, image window] minus its last token; the logits at (i, j)'s place in the
window (sequence position n_cond - 1 + p, p = (i - r0) * 16 + (j - c0)) give the token, after
temperature and top-k (ties at the k-th value kept). Positions not sampled yet hold 0; the
causal mask makes them irrelevant. Condition and image tokens share one embedding table.

Two samplers draw the same tokens:

- `sample_reference`: one full transformer forward per token and item, taming's way.
- `sample_fast`: a KV cache per window. Along a row the window usually stays put (always for
  grids 16 wide), so each new token costs one cached step; when the window moves the cache is
  rebuilt from the window's condition tokens. Items of a batch (same grid size) run together.

Randomness: each item has its own `torch.Generator` seeded with its seed, and every token
draws one vector of Exp(1) variables q from it; the token is argmax over the top-k of
(logit / temperature - log q). That is how `torch.multinomial` draws one sample, so the
distribution is taming's softmax + multinomial; per-item generators make an item's tokens
independent of the batch it is in.

Exactness: cached and full forwards differ by float rounding (~1e-6 of the logits in fp32),
so the fast sampler only keeps its own choice when it is certain: when the winner and the
top-k cut stay the same for any logit error up to `tolerance` (checked in float64). Otherwise
(rarely) it recomputes that token's logits with the reference's exact forward. Its tokens
are therefore those of `sample_reference` for the same seed, and that holds whenever the
real error stays below `tolerance` (set well above the measured error; `SampleStats` counts
the recomputations). bf16 (`dtype=torch.bfloat16`) keeps exactness the same way, but its
logit error (~1e-2) is larger than the gaps the choice depends on, so most choices get
recomputed (253 of 256 tokens of a 16x16 grid with a small random-weight transformer on this
CPU, slower than the reference): fp32 is the default on every device.

Usage::

    from vqgan import load_checkpoint
    from vqgan.sampling import sample_fast, sample_images

    models = load_checkpoint("coco.pt")
    cond = models.cond_stage.encode_to_indices(onehot)        # [B, h, w] long
    tokens = sample_fast(models.transformer, cond, seeds=[1, 2, 3], top_k=100)
    images = models.first_stage.decode_indices(tokens)         # [B, 3, 16h, 16w] in ~[-1, 1]
    # or all three steps: images = sample_images(models, onehot, seeds=[1, 2, 3])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from vqgan.nets.gpt import GPT

FP32_TOLERANCE = 1e-4  # relative to max(1, max |logit|); measured cached-vs-full errors ~1e-6
BF16_TOLERANCE = 0.1


@dataclass
class SampleStats:
    """What the fast sampler did (for benchmarks and tests)."""

    tokens: int = 0
    recomputed: int = 0  # uncertain choices redone with the reference forward
    rebuilds: int = 0  # cache rebuilt because the window moved
    cached_steps: int = 0  # forwards that extended the cache
    max_logit_error: float = 0.0  # largest |fast - reference| seen on recomputed tokens


def default_window(transformer: GPT) -> tuple[int, int]:
    """Square window whose condition + image tokens fill the block: 16 x 16 for 512."""
    side = math.isqrt(transformer.block_size // 2)
    return side, side


def window_start(position: int, size: int, window: int) -> int:
    """First row (column) of the window around `position`, clamped inside [0, size)."""
    return min(max(position - window // 2, 0), size - window)


def _window_dims(
    grid: tuple[int, int], window: tuple[int, int] | None, transformer: GPT
) -> tuple[int, int]:
    wh, ww = window or default_window(transformer)
    wh, ww = min(wh, grid[0]), min(ww, grid[1])
    if 2 * wh * ww - 1 > transformer.block_size:
        raise ValueError(
            f"a {wh}x{ww} window needs {2 * wh * ww - 1} positions, block_size is {transformer.block_size}"
        )
    return wh, ww


def _check_inputs(
    cond_tokens: Tensor, seeds: Sequence[int], top_k: int | None, temperature: float
) -> None:
    if cond_tokens.ndim != 3 or cond_tokens.dtype != torch.long:
        raise ValueError(
            f"cond_tokens must be long [B, H, W], got {cond_tokens.dtype} {tuple(cond_tokens.shape)}"
        )
    if len(seeds) != cond_tokens.shape[0]:
        raise ValueError(f"{len(seeds)} seeds for {cond_tokens.shape[0]} condition grids")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 or None, got {top_k}")


def _generators(seeds: Sequence[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(int(s)) for s in seeds]


def _exponentials(generator: torch.Generator, size: int) -> Tensor:
    """One Exp(1) vector per token: the same call in both samplers keeps their streams equal."""
    q = torch.empty(size, dtype=torch.float64).exponential_(generator=generator)
    return q.clamp_(min=torch.finfo(torch.float64).tiny)


def choose(logits: Tensor, q: Tensor, top_k: int | None, temperature: float) -> int:
    """The reference decision: argmax over the top-k of logits / temperature - log q (float64)."""
    scaled = logits.to(torch.float64) / temperature
    if top_k is not None and top_k < scaled.numel():
        kth = torch.topk(scaled, top_k).values[-1]
        scaled = torch.where(scaled >= kth, scaled, torch.tensor(-math.inf, dtype=torch.float64))
    return int(torch.argmax(scaled - torch.log(q)))


def choose_certified(
    logits: Tensor, q: Tensor, top_k: int | None, temperature: float, error: float
) -> int | None:
    """`choose` on logits known to within `error` (absolute): the choice, or None if unsure.

    Sure when the winner is in the top-k for any such error and beats every token that may be
    in the top-k by more than twice the error (after temperature).
    """
    scaled = logits.to(torch.float64) / temperature
    margin = 2 * error / temperature
    keys = scaled - torch.log(q)
    if top_k is not None and top_k < scaled.numel():
        kth = float(torch.topk(scaled, top_k).values[-1])
        keys = torch.where(
            scaled >= kth - margin, keys, torch.tensor(-math.inf, dtype=torch.float64)
        )
        surely_in = scaled >= kth + margin
    else:
        surely_in = None
    best2 = torch.topk(keys, 2)
    winner = int(best2.indices[0])
    if surely_in is not None and not bool(surely_in[winner]):
        return None
    if float(best2.values[0] - best2.values[1]) <= margin:
        return None
    return winner


def _window_tokens(cond: Tensor, grid: Tensor, r0: int, c0: int, wh: int, ww: int) -> Tensor:
    """[B, 2 * wh * ww]: the condition window, then the image window, each in raster order."""
    b = cond.shape[0]
    c = cond[:, r0 : r0 + wh, c0 : c0 + ww].reshape(b, -1)
    x = grid[:, r0 : r0 + wh, c0 : c0 + ww].reshape(b, -1)
    return torch.cat((c, x), dim=1)


def reference_logits(transformer: GPT, sequence: Tensor, position: int) -> Tensor:
    """taming's step for one item: full forward of the window sequence minus its last token."""
    return transformer(sequence[None, :-1])[0, position].float()


def _positions(height: int, width: int, wh: int, ww: int):
    """(i, j, r0, c0, p) in raster order, p = (i, j)'s index in its window."""
    for i in range(height):
        r0 = window_start(i, height, wh)
        for j in range(width):
            c0 = window_start(j, width, ww)
            yield i, j, r0, c0, (i - r0) * ww + (j - c0)


@torch.inference_mode()
def sample_reference(
    transformer: GPT,
    cond_tokens: Tensor,
    *,
    seeds: Sequence[int],
    top_k: int | None = 100,
    temperature: float = 1.0,
    window: tuple[int, int] | None = None,
    max_tokens: int | None = None,
) -> Tensor:
    """Image tokens [B, H, W] for condition tokens [B, H, W], one full forward per token.

    `max_tokens` stops each item after that many tokens (the rest stay 0): for timing and
    spot checks of the full-size model.
    """
    _check_inputs(cond_tokens, seeds, top_k, temperature)
    transformer.eval()
    b, height, width = cond_tokens.shape
    wh, ww = _window_dims((height, width), window, transformer)
    n_cond, vocab = wh * ww, transformer.config.vocab_size
    grid = torch.zeros_like(cond_tokens)
    for item, generator in enumerate(_generators(seeds)):
        for n, (i, j, r0, c0, p) in enumerate(_positions(height, width, wh, ww)):
            if max_tokens is not None and n >= max_tokens:
                break
            seq = _window_tokens(
                cond_tokens[item : item + 1], grid[item : item + 1], r0, c0, wh, ww
            )[0]
            logits = reference_logits(transformer, seq, n_cond - 1 + p).cpu()
            grid[item, i, j] = choose(logits, _exponentials(generator, vocab), top_k, temperature)
    return grid


def _fast_model(transformer: GPT, dtype: torch.dtype) -> GPT:
    if dtype == transformer.pos_emb.dtype:
        return transformer
    import copy

    return copy.deepcopy(transformer).to(dtype)


@torch.inference_mode()
def sample_fast(
    transformer: GPT,
    cond_tokens: Tensor,
    *,
    seeds: Sequence[int],
    top_k: int | None = 100,
    temperature: float = 1.0,
    window: tuple[int, int] | None = None,
    dtype: torch.dtype | None = None,
    tolerance: float | None = None,
    stats: SampleStats | None = None,
    max_tokens: int | None = None,
) -> Tensor:
    """The same tokens as `sample_reference`, with a KV cache per window, batched over items.

    cond_tokens: long [B, H, W] (one condition grid per person/image, same size); seeds: one
    per item. dtype: compute dtype of the cached forwards (default: the transformer's, fp32;
    bf16 pays off on GPUs). tolerance: bound on |fast - exact| logits, relative to
    max(1, max |logit|) (default 1e-4 for fp32, 0.1 for bf16); uncertain choices are redone
    exactly (module docstring). `stats` collects counters when given.
    """
    _check_inputs(cond_tokens, seeds, top_k, temperature)
    transformer.eval()
    dtype = dtype or transformer.pos_emb.dtype
    rtol = (
        tolerance
        if tolerance is not None
        else (BF16_TOLERANCE if dtype == torch.bfloat16 else FP32_TOLERANCE)
    )
    fast = _fast_model(transformer, dtype).eval()
    stats = stats if stats is not None else SampleStats()
    b, height, width = cond_tokens.shape
    wh, ww = _window_dims((height, width), window, transformer)
    n_cond, vocab = wh * ww, transformer.config.vocab_size
    generators = _generators(seeds)
    grid = torch.zeros_like(cond_tokens)
    cache = fast.new_cache(b, 2 * n_cond - 1)
    cached_window: tuple[int, int] | None = None
    for n, (i, j, r0, c0, p) in enumerate(_positions(height, width, wh, ww)):
        if max_tokens is not None and n >= max_tokens:
            break
        seq = _window_tokens(cond_tokens, grid, r0, c0, wh, ww)
        need = n_cond + p  # positions 0 .. n_cond - 1 + p must be in the cache
        if cached_window != (r0, c0) or cache.length > need:
            cache.reset()
            cached_window = (r0, c0)
            stats.rebuilds += 1
        else:
            stats.cached_steps += 1
        logits, cache = fast.forward_with_cache(seq[:, cache.length : need], cache, last_only=True)
        logits = logits[:, -1].float().cpu()
        for item in range(b):
            q = _exponentials(generators[item], vocab)
            row = logits[item]
            error = rtol * max(1.0, float(row.abs().max()))
            token = choose_certified(row, q, top_k, temperature, error)
            if token is None:
                exact = reference_logits(transformer, seq[item], n_cond - 1 + p).cpu()
                stats.recomputed += 1
                stats.max_logit_error = max(stats.max_logit_error, float((exact - row).abs().max()))
                token = choose(exact, q, top_k, temperature)
            grid[item, i, j] = token
        stats.tokens += b
    return grid


@torch.inference_mode()
def sample_images(
    models,
    segmentation_onehot: Tensor,
    *,
    seeds: Sequence[int],
    top_k: int | None = 100,
    temperature: float = 1.0,
    **fast_kwargs,
) -> Tensor:
    """One-hot label maps [B, L, H, W] -> sampled images [B, 3, H', W'] (fast sampler).

    `models` is what `vqgan.load_checkpoint` returns (cond_stage, transformer, first_stage).
    """
    cond = models.cond_stage.encode_to_indices(segmentation_onehot)
    tokens = sample_fast(
        models.transformer, cond, seeds=seeds, top_k=top_k, temperature=temperature, **fast_kwargs
    )
    return models.first_stage.decode_indices(tokens)
