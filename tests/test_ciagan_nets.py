"""CIAGAN networks: shapes per the paper's Tables 5-7, configs, identity input, gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ciagan.nets import (
    Discriminator,
    Generator,
    IdentityNet,
    ResBlock,
    ResBlockDown,
    ResBlockUp,
    count_parameters,
)

NUM_IDS = 12
SMALL = {"channels": (8, 16, 16), "up_channels": (16, 8, 8), "bottleneck_channels": 16}
SMALL_ID = {"id_hidden": (32, 32), "id_channels": (8, 16), "num_res_blocks": 1}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def record_shapes(named: dict[str, nn.Module], inputs: bool = False):
    """Forward hooks storing each module's output (or first input) shape, minus batch."""
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for name, module in named.items():

        def hook(_m, args, out, name=name):
            shapes[name] = tuple((args[0] if inputs else out).shape[1:])

        handles.append(module.register_forward_hook(hook))
    return shapes, handles


def generator_inputs(batch: int, size: int):
    return torch.randn(batch, 3, size, size), torch.randn(batch, 3, size, size)


def test_generator_128_shapes_follow_table_5_and_7():
    gen = Generator(NUM_IDS).eval()
    modules = {f"enc{i}": b for i, b in enumerate(gen.encoder)}
    modules |= {f"id{i}": b for i, b in enumerate(gen.id_conv)}
    modules["id_mlp"] = gen.id_mlp
    modules["fuse"] = gen.fuse
    modules |= {f"res{i}": b for i, b in enumerate(gen.res_blocks)}
    modules |= {f"dec{i}": b for i, b in enumerate(gen.decoder)}
    modules["out"] = gen.to_rgb
    shapes, handles = record_shapes(modules)
    concat, handles_in = record_shapes({"concat": gen.fuse}, inputs=True)
    with torch.no_grad():
        out = gen(*generator_inputs(1, 128), torch.tensor([3]))
    for h in handles + handles_in:
        h.remove()

    assert shapes["enc0"] == (32, 64, 64)
    assert shapes["enc1"] == (64, 32, 32)
    assert shapes["enc2"] == (128, 16, 16)
    assert shapes["enc3"] == (256, 8, 8)
    assert shapes["enc4"] == (256, 4, 4)
    assert shapes["id_mlp"] == (512,)
    assert [shapes[f"id{i}"] for i in range(3)] == [(64, 4, 4), (128, 4, 4), (256, 4, 4)]
    assert concat["concat"] == (512, 4, 4)
    assert shapes["fuse"] == (256, 4, 4)
    assert [shapes[f"res{i}"] for i in range(4)] == [(256, 4, 4)] * 4
    assert [shapes[f"dec{i}"] for i in range(5)] == [
        (256, 8, 8),
        (128, 16, 16),
        (64, 32, 32),
        (32, 64, 64),
        (16, 128, 128),
    ]
    assert shapes["out"] == (3, 128, 128)
    assert out.shape == (1, 3, 128, 128)
    assert torch.isfinite(out).all()


def test_discriminator_128_shapes_follow_table_6():
    disc = Discriminator()
    modules = {f"down{i}": b for i, b in enumerate(disc.trunk.blocks)}
    modules |= {"fc": disc.trunk.fc, "head": disc.head}
    shapes, handles = record_shapes(modules)
    x = torch.randn(2, 6, 128, 128)
    out = disc(x)
    for h in handles:
        h.remove()
    assert [shapes[f"down{i}"] for i in range(5)] == [
        (32, 64, 64),
        (64, 32, 32),
        (128, 16, 16),
        (256, 8, 8),
        (512, 4, 4),
    ]
    assert shapes["fc"] == (1024,)
    assert shapes["head"] == (1,)
    assert out.shape == (2,)
    # the score is the plain output of a Linear layer (no LeakyReLU on it, unlike official)
    assert isinstance(disc.head, nn.Linear)
    disc.eval()
    with torch.no_grad():
        assert torch.allclose(disc(x), disc.head(disc.trunk(x)).squeeze(1))


@pytest.mark.parametrize("kind", ["siamese", "classifier"])
def test_identity_net_128_shapes(kind):
    net = IdentityNet(NUM_IDS, kind=kind)
    shapes, handles = record_shapes({f"down{i}": b for i, b in enumerate(net.trunk.blocks)})
    x = torch.randn(2, 3, 128, 128)
    out = net(x)
    for h in handles:
        h.remove()
    assert shapes["down0"] == (32, 64, 64)
    assert shapes["down4"] == (512, 4, 4)
    emb = net.embed(x)
    if kind == "siamese":
        assert out.shape == (2, 512)
        assert emb.shape == (2, 512)
        assert torch.allclose(emb, out / out.norm(dim=1, keepdim=True), atol=1e-6)
    else:
        assert out.shape == (2, NUM_IDS)
        assert emb.shape == (2, 1024)
    assert emb.shape[1] == net.embedding_dim
    assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)


def test_64px_configs_work():
    gen = Generator(
        NUM_IDS, image_size=64, channels=(32, 64, 128, 256), up_channels=(128, 64, 32, 16)
    ).eval()
    with torch.no_grad():
        out = gen(*generator_inputs(2, 64), torch.tensor([0, 5]))
    assert out.shape == (2, 3, 64, 64)
    disc = Discriminator(image_size=64, channels=(64, 128, 256, 512))
    assert disc(torch.randn(2, 6, 64, 64)).shape == (2,)
    for kind in ("siamese", "classifier"):
        net = IdentityNet(NUM_IDS, image_size=64, kind=kind, channels=(32, 64, 128, 256))
        assert net(torch.randn(2, 3, 64, 64)).shape[0] == 2


@pytest.mark.parametrize("size", [64, 128])
def test_skip_connections(size):
    channels = (8, 16, 32, 32, 32)[: 4 if size == 64 else 5]
    up = (32, 16, 16, 8, 8)[: len(channels)]
    gen = Generator(
        NUM_IDS, image_size=size, channels=channels, up_channels=up, skip_connections=True
    )
    # decoder blocks after the first take the matching encoder features
    assert gen.decoder[1].conv1.in_channels == up[0] + channels[-2]
    assert gen.decoder[-1].conv1.in_channels == up[-2] + channels[0]
    out = gen(*generator_inputs(2, size), torch.tensor([1, 2]))
    assert out.shape == (2, 3, size, size)
    out.mean().backward()
    assert gen.encoder[0].conv1.parametrizations.weight.original.grad is not None


def test_small_width_config_for_cpu_demo():
    gen = Generator(NUM_IDS, channels=(16, 32, 64, 64, 64), up_channels=(64, 64, 32, 16, 8))
    gen.eval()
    with torch.no_grad():
        assert gen(*generator_inputs(2, 128), torch.tensor([0, 1])).shape == (2, 3, 128, 128)


def test_bad_image_size_raises_clearly():
    with pytest.raises(ValueError, match=r"4 \* 2\*\*len\(channels\).*needs len\(channels\) == 4"):
        Generator(NUM_IDS, image_size=64)
    with pytest.raises(ValueError, match=r"len\(up_channels\)"):
        Generator(NUM_IDS, image_size=64, channels=(8, 16, 32, 32))
    with pytest.raises(ValueError, match="power of two"):
        Generator(NUM_IDS, image_size=100)
    with pytest.raises(ValueError, match="Discriminator.*image_size"):
        Discriminator(image_size=256)
    with pytest.raises(ValueError, match="IdentityNet.*image_size"):
        IdentityNet(NUM_IDS, image_size=32)
    with pytest.raises(ValueError, match="kind"):
        IdentityNet(NUM_IDS, kind="proxy")
    with pytest.raises(ValueError, match="expects"):
        Discriminator(image_size=64, channels=(8, 8, 8, 8))(torch.randn(1, 6, 128, 128))


def test_identity_as_index_equals_one_hot_and_checks_shapes():
    gen = Generator(NUM_IDS, image_size=32, **SMALL, **SMALL_ID).eval()  # eval: fixed SN vectors
    cond, masked = generator_inputs(3, 32)
    idx = torch.tensor([0, 7, 11])
    with torch.no_grad():
        by_index = gen(cond, masked, idx)
        by_one_hot = gen(cond, masked, nn.functional.one_hot(idx, NUM_IDS).float())
        other = gen(cond, masked, torch.tensor([1, 7, 10]))
    assert torch.equal(by_index, by_one_hot)
    assert not torch.allclose(by_index[0], other[0])  # the identity changes the output
    assert torch.equal(by_index[1], other[1])  # and each sample only its own
    with pytest.raises(ValueError, match="shape"):
        gen(cond, masked, torch.zeros(3, NUM_IDS + 1))
    with pytest.raises(ValueError, match="batch size"):
        gen(cond, masked, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="channels"):
        gen(cond[:, :1], masked, idx)


def test_spectral_norm_and_padding_options():
    with_sn = Generator(NUM_IDS, image_size=32, **SMALL, **SMALL_ID)
    without = Generator(
        NUM_IDS, image_size=32, **SMALL, **SMALL_ID, spectral_norm=False, padding_mode="zeros"
    )
    assert with_sn.encoder[0].conv1.padding_mode == "reflect"
    assert hasattr(with_sn.encoder[0].conv1, "parametrizations")
    assert not any(hasattr(m, "parametrizations") for m in without.modules())
    assert without.encoder[0].conv1.padding_mode == "zeros"
    # parametrised and plain nets have the same number of parameters
    assert count_parameters(with_sn) == count_parameters(without)
    # D: no InstanceNorm by default; IdentityNet: IN, no spectral norm by default
    assert not any(isinstance(m, nn.InstanceNorm2d) for m in Discriminator().modules())
    assert any(isinstance(m, nn.InstanceNorm2d) for m in Discriminator(norm=True).modules())
    ident = IdentityNet(NUM_IDS)
    assert any(isinstance(m, nn.InstanceNorm2d) for m in ident.modules())
    assert not any(hasattr(m, "parametrizations") for m in ident.modules())
    with pytest.raises(ValueError, match="padding_mode"):
        ResBlock(4, padding_mode="mirror")


def test_blocks_shapes_and_norm_option():
    x = torch.randn(2, 8, 16, 16)
    assert ResBlockDown(8, 12)(x).shape == (2, 12, 8, 8)
    assert ResBlockUp(8, 4)(x).shape == (2, 4, 32, 32)
    assert ResBlock(8)(x).shape == (2, 8, 16, 16)
    plain = ResBlockDown(8, 12, norm=False, spectral_norm=False)
    assert plain.conv2.bias is not None and isinstance(plain.norm, nn.Identity)
    normed = ResBlockDown(8, 12, spectral_norm=False)
    assert normed.conv2.bias is None  # redundant before InstanceNorm


def test_parameter_counts_of_default_128px_nets(capsys):
    counts = {
        "G": count_parameters(Generator(1200)),
        "D": count_parameters(Discriminator()),
        "S siamese": count_parameters(IdentityNet(1200)),
        "S classifier": count_parameters(IdentityNet(1200, kind="classifier")),
    }
    with capsys.disabled():
        print("\nCIAGAN 128 px parameter counts (1,200 identities):", counts)
    # official G ~11.8M; D and S follow Table 6's widths (official D: 64-based, ~18.2M)
    assert 11.0e6 < counts["G"] < 12.5e6
    assert 12.0e6 < counts["D"] < 15.0e6
    assert 12.0e6 < counts["S siamese"] < 15.0e6
    assert counts["S classifier"] > counts["S siamese"]


def assert_all_grads(module: nn.Module):
    missing, bad, zero = [], [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        if p.grad is None:
            missing.append(name)
        elif not torch.isfinite(p.grad).all():
            bad.append(name)
        elif not p.grad.abs().sum() > 0:
            zero.append(name)
    assert not missing, f"no gradient: {missing}"
    assert not bad, f"non-finite gradient: {bad}"
    assert not zero, f"all-zero gradient: {zero}"


@pytest.mark.parametrize("skips", [False, True])
def test_generator_gradient_coverage(skips):
    gen = Generator(NUM_IDS, image_size=32, **SMALL, **SMALL_ID, skip_connections=skips)
    out = gen(*generator_inputs(2, 32), torch.tensor([2, 9]))
    (out - torch.randn_like(out)).square().mean().backward()
    assert_all_grads(gen)


def test_discriminator_gradient_coverage_with_two_forwards():
    # LSGAN D step: real and fake pass through the spectrally normalised D separately
    disc = Discriminator(image_size=32, channels=(8, 16, 16), hidden=32)
    real, fake = disc(torch.randn(2, 6, 32, 32)), disc(torch.randn(2, 6, 32, 32))
    ((real - 1).square().mean() + fake.square().mean()).backward()
    assert_all_grads(disc)


@pytest.mark.parametrize("kind", ["siamese", "classifier"])
def test_identity_net_gradient_coverage(kind):
    net = IdentityNet(NUM_IDS, image_size=32, kind=kind, channels=(8, 16, 16), hidden=32)
    net.embed(torch.randn(3, 3, 32, 32)).sum().backward()  # embed covers the trunk
    out = net(torch.randn(3, 3, 32, 32))
    (out - torch.randn_like(out)).square().mean().backward()
    assert_all_grads(net)
