"""The fast sampler draws exactly the reference sampler's tokens (taming's windowed procedure)."""

from __future__ import annotations

import pytest
import torch

from vqgan.nets import GPT, GPTConfig
from vqgan.sampling import (
    SampleStats,
    choose,
    choose_certified,
    default_window,
    sample_fast,
    sample_reference,
    window_start,
)

VOCAB = 40


def _transformer(block_size: int, seed: int = 0) -> GPT:
    """A small random transformer with peaked logits (std ~3), like a trained one."""
    torch.manual_seed(seed)
    gpt = GPT(GPTConfig(vocab_size=VOCAB, block_size=block_size, n_layer=1, n_head=1, n_embd=16))
    with torch.no_grad():
        gpt.head.weight.mul_(40)
        gpt.pos_emb.normal_(0, 0.3)
    return gpt.eval()


@pytest.fixture(scope="module")
def window16() -> GPT:
    return _transformer(512)  # taming's 16 x 16 window: 256 condition + 256 image tokens


@pytest.fixture(scope="module")
def window4() -> GPT:
    return _transformer(32, seed=1)  # a 4 x 4 window: cheap, for edge cases and many seeds


def test_window_placement_follows_taming() -> None:
    # taming: local = i if i <= 8; 16 - (H - i) if H - i < 8; else 8  ->  start = i - local
    for size in (16, 17, 24, 32):
        for i in range(size):
            local = i if i <= 8 else (16 - (size - i) if size - i < 8 else 8)
            assert window_start(i, size, 16) == i - local
    assert default_window(_transformer(512)) == (16, 16)


@pytest.mark.parametrize(
    ("height", "width", "seeds"), [(16, 16, [11, 12]), (17, 17, [3]), (24, 24, [5]), (32, 32, [7])]
)
def test_fast_sampler_draws_the_reference_tokens(
    window16: GPT, height: int, width: int, seeds: list[int]
) -> None:
    cond = torch.randint(
        0, VOCAB, (len(seeds), height, width), generator=torch.Generator().manual_seed(height)
    )
    stats = SampleStats()
    fast = sample_fast(window16, cond, seeds=seeds, top_k=10, stats=stats)
    reference = sample_reference(window16, cond, seeds=seeds, top_k=10)
    assert torch.equal(fast, reference)
    assert stats.tokens == len(seeds) * height * width
    assert stats.recomputed < 0.1 * stats.tokens  # certified choices are the rule
    assert len(fast.unique()) > 5


@pytest.mark.parametrize("shape", [(4, 4), (5, 5), (4, 9), (9, 4), (3, 7), (7, 2), (6, 6), (1, 1)])
def test_window_edges_on_many_seeds(window4: GPT, shape: tuple[int, int]) -> None:
    seeds = list(range(12))
    cond = torch.randint(
        0, VOCAB, (len(seeds), *shape), generator=torch.Generator().manual_seed(sum(shape))
    )
    fast = sample_fast(window4, cond, seeds=seeds, top_k=8, temperature=0.7)
    assert torch.equal(fast, sample_reference(window4, cond, seeds=seeds, top_k=8, temperature=0.7))


def test_no_top_k_and_hot_temperature(window4: GPT) -> None:
    cond = torch.randint(0, VOCAB, (6, 6, 7), generator=torch.Generator().manual_seed(0))
    seeds = [100 + s for s in range(6)]
    fast = sample_fast(window4, cond, seeds=seeds, top_k=None, temperature=2.0)
    assert torch.equal(
        fast, sample_reference(window4, cond, seeds=seeds, top_k=None, temperature=2.0)
    )


def test_an_item_does_not_depend_on_its_batch(window4: GPT) -> None:
    cond = torch.randint(0, VOCAB, (3, 6, 6), generator=torch.Generator().manual_seed(1))
    together = sample_fast(window4, cond, seeds=[4, 5, 6])
    alone = sample_fast(window4, cond[1:2], seeds=[5])
    assert torch.equal(together[1:2], alone)
    assert not torch.equal(together[0], together[2])
    assert torch.equal(sample_fast(window4, cond, seeds=[4, 5, 6]), together)  # seeded: repeats


def test_recomputation_and_bf16_keep_tokens_exact(window4: GPT) -> None:
    cond = torch.randint(0, VOCAB, (2, 5, 6), generator=torch.Generator().manual_seed(2))
    reference = sample_reference(window4, cond, seeds=[1, 2])
    stats = SampleStats()
    assert torch.equal(
        sample_fast(window4, cond, seeds=[1, 2], tolerance=1e9, stats=stats), reference
    )
    assert stats.recomputed == stats.tokens == 60
    stats = SampleStats()
    bf16 = sample_fast(window4, cond, seeds=[1, 2], dtype=torch.bfloat16, stats=stats)
    assert torch.equal(bf16, reference)
    assert stats.max_logit_error > 0  # bf16 logits differ; recomputed choices make up for it


def test_max_tokens_stops_early(window4: GPT) -> None:
    cond = torch.randint(0, VOCAB, (1, 6, 6), generator=torch.Generator().manual_seed(3))
    full = sample_fast(window4, cond, seeds=[9])
    part = sample_reference(window4, cond, seeds=[9], max_tokens=8)
    assert torch.equal(part.flatten()[:8], full.flatten()[:8]) and not part.flatten()[8:].any()


def test_certified_choice_is_never_wrong() -> None:
    generator = torch.Generator().manual_seed(0)
    unsure = 0
    for trial in range(400):
        logits = torch.randn(50, generator=generator) * 3
        q = torch.empty(50, dtype=torch.float64).exponential_(generator=generator)
        error = 0.05
        token = choose_certified(logits, q, 10, 1.0, error)
        noisy = logits + (torch.rand(50, generator=generator) * 2 - 1) * error
        if token is None:
            unsure += 1
        else:
            assert token == choose(noisy, q, 10, 1.0), trial
            assert token == choose(logits, q, 10, 1.0)
    assert unsure < 100


def test_bad_arguments_are_explained(window4: GPT) -> None:
    cond = torch.zeros(2, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="seeds"):
        sample_fast(window4, cond, seeds=[1])
    with pytest.raises(ValueError, match="long"):
        sample_reference(window4, cond.float(), seeds=[1, 2])
    with pytest.raises(ValueError, match="block_size"):
        sample_fast(window4, torch.zeros(2, 8, 8, dtype=torch.long), seeds=[1, 2], window=(8, 8))
