"""VQGAN networks: official sizes, configs, quantizer losses, KV cache, gradient coverage."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deid.errors import DeidError
from vqgan.nets import (
    GPT,
    DiscriminatorConfig,
    GPTConfig,
    NLayerDiscriminator,
    VectorQuantizer,
    VQAutoencoder,
    VQConfig,
    count_parameters,
)

TINY_VQ = VQConfig(
    resolution=32, ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(16,),
    z_channels=8, embed_dim=4, n_embed=16,
)  # fmt: skip
TINY_GPT = GPTConfig(vocab_size=24, block_size=16, n_layer=2, n_head=2, n_embd=16)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_full_size_parameter_counts_match_the_official_models() -> None:
    with torch.device("meta"):
        first = VQAutoencoder(VQConfig(n_embed=8192))
        cond = VQAutoencoder(VQConfig(in_channels=183, out_channels=183, n_embed=1024))
        transformer = GPT(GPTConfig())
    assert count_parameters(first) == 73_976_707
    assert count_parameters(first.encoder) == 29_298_176
    assert count_parameters(first.decoder) == 42_449_795
    assert count_parameters(cond) == 72_556_599
    assert count_parameters(transformer) == 651_307_520


def test_official_key_names_and_attention_placement() -> None:
    model = VQAutoencoder(VQConfig(resolution=64, ch=32, ch_mult=(1, 1, 2), attn_resolutions=(32,)))
    keys = set(model.state_dict())
    for key in (
        "encoder.conv_in.weight", "encoder.down.2.block.0.nin_shortcut.weight", "encoder.down.1.attn.1.proj_out.weight",
        "encoder.down.0.downsample.conv.weight", "encoder.mid.attn_1.q.weight",
        "encoder.mid.block_2.norm2.bias", "decoder.up.1.attn.2.k.weight",
        "decoder.up.2.upsample.conv.weight", "decoder.norm_out.weight", "quantize.embedding.weight",
        "quant_conv.weight", "post_quant_conv.bias",
    ):  # fmt: skip
        assert key in keys, key
    assert not any(k.startswith("encoder.down.0.attn") for k in keys)  # 64 px level: no attention
    assert not any(k.startswith("encoder.down.2.downsample") for k in keys)  # last level: none
    assert not any(k.startswith("decoder.up.0.upsample") for k in keys)
    gpt_keys = set(GPT(TINY_GPT).state_dict())
    assert {"tok_emb.weight", "pos_emb", "blocks.1.attn.query.bias", "blocks.0.mlp.2.weight",
            "ln_f.bias", "head.weight"} <= gpt_keys  # fmt: skip
    assert "head.bias" not in gpt_keys and not any(k.endswith("attn.mask") for k in gpt_keys)
    assert "main.11.weight" in NLayerDiscriminator().state_dict()


def test_shapes_through_both_stages() -> None:
    model = VQAutoencoder(TINY_VQ).eval()
    x = torch.rand(2, 3, 32, 48) * 2 - 1
    indices = model.encode_to_indices(x)
    assert indices.shape == (2, 16, 24) and indices.dtype == torch.long
    assert model.decode_indices(indices).shape == (2, 3, 32, 48)
    seg = VQAutoencoder(VQConfig(**{**TINY_VQ.to_dict(), "in_channels": 7, "out_channels": 7}))
    onehot = nn.functional.one_hot(torch.randint(0, 7, (1, 32, 32)), 7).permute(0, 3, 1, 2).float()
    assert seg(onehot)[0].shape == (1, 7, 32, 32)


def test_config_round_trip_and_errors() -> None:
    assert VQConfig.from_dict(TINY_VQ.to_dict()) == TINY_VQ
    assert GPTConfig.from_dict(TINY_GPT.to_dict()) == TINY_GPT
    with pytest.raises(DeidError, match="unknown keys"):
        VQConfig.from_dict({**TINY_VQ.to_dict(), "heads": 3})
    with pytest.raises(DeidError, match="multiples of 32"):
        VQConfig(ch=48)
    with pytest.raises(DeidError, match="not divisible"):
        GPTConfig(n_embd=30, n_head=4)


@pytest.mark.parametrize("legacy", [False, True])
def test_quantizer_beta_placements_give_the_documented_gradients(legacy: bool) -> None:
    beta = 0.25
    quantizer = VectorQuantizer(n_embed=8, embed_dim=3, beta=beta, legacy=legacy)
    z = torch.randn(2, 3, 4, 4, requires_grad=True)
    out = quantizer(z)
    e = quantizer.embedding.weight[out.indices].permute(0, 3, 1, 2).detach()
    mse = torch.mean((z.detach() - e) ** 2)
    assert torch.allclose(out.loss, (1 + beta) * mse)  # the value is the same for both
    out.loss.backward()
    n = z.numel()
    commitment, codebook = (1.0, beta) if legacy else (beta, 1.0)
    assert torch.allclose(z.grad, commitment * 2 * (z.detach() - e) / n, atol=1e-7)
    expected = torch.zeros_like(quantizer.embedding.weight)
    flat_e = (e - z.detach()).permute(0, 2, 3, 1).reshape(-1, 3)
    expected.index_add_(0, out.indices.reshape(-1), codebook * 2 * flat_e / n)
    assert torch.allclose(quantizer.embedding.weight.grad, expected, atol=1e-7)


def test_quantizer_straight_through_and_usage_stats() -> None:
    quantizer = VectorQuantizer(n_embed=4, embed_dim=2)
    with torch.no_grad():
        quantizer.embedding.weight.copy_(torch.tensor([[0.0, 0], [1, 0], [0, 1], [5, 5]]))
    z = torch.tensor([[0.1, 0.0], [0.9, 0.1], [0.0, 1.2], [1.1, 0.0]]).T.reshape(1, 2, 2, 2)
    z.requires_grad_(True)
    out = quantizer(z)
    assert out.indices.flatten().tolist() == [0, 1, 2, 1]
    assert torch.allclose(out.usage, torch.tensor(0.75))
    probs = torch.tensor([0.25, 0.5, 0.25])
    assert torch.allclose(out.perplexity, torch.exp(-(probs * probs.log()).sum()))
    out.z_q.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))  # straight-through: identity gradient


def test_kv_cache_matches_the_full_forward() -> None:
    gpt = GPT(TINY_GPT).eval()
    tokens = torch.randint(0, 24, (3, 16))
    full = gpt(tokens)
    cache = gpt.new_cache(3)
    parts = [
        gpt.forward_with_cache(tokens[:, a:b], cache)[0]
        for a, b in [(0, 5), (5, 6), (6, 11), (11, 16)]
    ]
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)
    cache.reset()
    last, _ = gpt.forward_with_cache(tokens[:, :9], cache, last_only=True)
    assert torch.allclose(last[:, 0], full[:, 8], atol=1e-5)
    with pytest.raises(ValueError, match="block_size"):
        gpt(torch.zeros(1, 17, dtype=torch.long))


def _assert_every_parameter_has_gradient(model: nn.Module) -> None:
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing
    zero = [n for n, p in model.named_parameters() if p.grad is not None and not p.grad.abs().sum()]
    assert not zero, zero


def test_gradient_coverage_of_every_network() -> None:
    model = VQAutoencoder(TINY_VQ)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    rec, q = model(x)
    (torch.abs(rec - x).mean() + q.loss).backward()
    _assert_every_parameter_has_gradient(model)

    disc = NLayerDiscriminator(DiscriminatorConfig(ndf=8, n_layers=2))
    disc(torch.randn(2, 3, 32, 32)).mean().backward()
    _assert_every_parameter_has_gradient(disc)

    gpt = GPT(TINY_GPT)
    tokens = torch.randint(0, 24, (2, 16))
    logits = gpt(tokens[:, :-1])
    nn.functional.cross_entropy(logits.reshape(-1, 24), tokens[:, 1:].reshape(-1)).backward()
    _assert_every_parameter_has_gradient(gpt)
