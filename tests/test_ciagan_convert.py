"""`python -m ciagan.convert_official`: the official CIAGAN generator (dvl-tum/ciagan
`arch_unet_flex.Generator`, 128 px, 1,200 identities) onto ours. A state dict with the official
key names and shapes (random values) converts strictly, and our generator reproduces a plain
re-implementation of the official forward pass written here from the official layer list."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor
from torch.nn import functional as F

from ciagan.anonymizer import CiaganAnonymizer, GeneratorInput, load_generator
from ciagan.convert_official import convert_state, main, read_official
from ciagan.nets import inpaint
from deid.errors import DeidError

IDENTITIES = 1200
DOWN = [(0, 6, 32), (1, 32, 64), (2, 64, 128), (3, 128, 256), (4, 256, 256)]
UP = [(4, 256, 256), (3, 256, 128), (2, 128, 64), (1, 64, 32), (0, 32, 16)]
MLP = [256, 256, 256, 256, 512, 512, 512]
NOISE = [(0, 32, 64), (3, 64, 128), (6, 128, 256)]


# ---------------------------------------------------------------- the official layout


def _conv_layer(state: dict, name: str, cin: int, cout: int, k: int, g: torch.Generator) -> None:
    """A spectrally normalised ConvLayer as torch.nn.utils.spectral_norm stores it."""
    weight = torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5
    matrix = weight.reshape(cout, -1)
    v = F.normalize(torch.randn(cin * k * k, generator=g), dim=0)
    for _ in range(3):  # converged-ish power iteration vectors, as after training
        u = F.normalize(matrix @ v, dim=0)
        v = F.normalize(matrix.t() @ u, dim=0)
    state[f"{name}.conv2d.weight_orig"] = weight
    state[f"{name}.conv2d.bias"] = torch.randn(cout, generator=g) * 0.1
    state[f"{name}.conv2d.weight_u"] = u
    state[f"{name}.conv2d.weight_v"] = v


def _norm(state: dict, name: str, channels: int, g: torch.Generator) -> None:
    state[f"{name}.weight"] = 1 + 0.1 * torch.randn(channels, generator=g)
    state[f"{name}.bias"] = 0.1 * torch.randn(channels, generator=g)


def official_state(identities: int = IDENTITIES, seed: int = 0) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    state: dict[str, Tensor] = {}
    for k, cin, cout in DOWN:
        _conv_layer(state, f"conv{k}.conv_r1", cin, cout, 3, g)
        _conv_layer(state, f"conv{k}.conv_r2", cout, cout, 3, g)
        _conv_layer(state, f"conv{k}.conv_l", cin, cout, 1, g)
        _norm(state, f"in{k}_e", cout, g)
    _conv_layer(state, "embed.0", 512, 256, 3, g)
    _norm(state, "embed.1", 256, g)
    for j in range(1, 5):
        _conv_layer(state, f"res{j}.conv1", 256, 256, 3, g)
        _norm(state, f"res{j}.in1", 256, g)
        _conv_layer(state, f"res{j}.conv2", 256, 256, 3, g)
        _norm(state, f"res{j}.in2", 256, g)
    for k, cin, cout in UP:
        _norm(state, f"deconv{k}.norm_r1", cin, g)
        _conv_layer(state, f"deconv{k}.conv_r1", cin, cout, 3, g)
        _norm(state, f"deconv{k}.norm_r2", cout, g)
        _conv_layer(state, f"deconv{k}.conv_r2", cout, cout, 3, g)
        _conv_layer(state, f"deconv{k}.conv_l", cin, cout, 1, g)
        _norm(state, f"in{k}_d", cout, g)
    state["conv_end.0.weight"] = torch.randn(3, 16, 3, 3, generator=g) * 0.1
    state["conv_end.0.bias"] = torch.randn(3, generator=g) * 0.1
    prev = identities
    for j, width in enumerate(MLP):
        state[f"encode_one_hot.{2 * j}.weight"] = torch.randn(width, prev, generator=g) / prev**0.5
        state[f"encode_one_hot.{2 * j}.bias"] = torch.randn(width, generator=g) * 0.1
        prev = width
    for index, cin, cout in NOISE:
        _conv_layer(state, f"encode_noise.{index}", cin, cout, 3, g)
        _norm(state, f"encode_noise.{index + 2}", cout, g)
    return state


def _conv(state: dict, name: str, x: Tensor) -> Tensor:
    """ConvLayer in eval: reflection pad k // 2, weight / (u . W v), bias."""
    weight = state[f"{name}.conv2d.weight_orig"]
    u, v = state[f"{name}.conv2d.weight_u"], state[f"{name}.conv2d.weight_v"]
    sigma = torch.dot(u, weight.reshape(weight.shape[0], -1) @ v)
    pad = weight.shape[-1] // 2
    x = F.pad(x, [pad] * 4, mode="reflect") if pad else x
    return F.conv2d(x, weight / sigma, state[f"{name}.conv2d.bias"])


def _in(state: dict, name: str, x: Tensor) -> Tensor:
    return F.instance_norm(x, weight=state[f"{name}.weight"], bias=state[f"{name}.bias"])


def official_forward(state: dict, x: Tensor, onehot: Tensor) -> Tensor:
    """The official Generator.forward (images in [0, 1]), from its layer list."""
    out = x
    for k, _, _ in DOWN:  # ResidualBlockDown: pre-activation, IN outside the block
        main = _conv(
            state, f"conv{k}.conv_r2", F.relu(_conv(state, f"conv{k}.conv_r1", F.relu(out)))
        )
        side = _conv(state, f"conv{k}.conv_l", out)
        out = _in(state, f"in{k}_e", F.avg_pool2d(main, 2) + F.avg_pool2d(side, 2))
    noise = onehot
    for j in range(len(MLP)):
        noise = F.leaky_relu(
            F.linear(
                noise,
                state[f"encode_one_hot.{2 * j}.weight"],
                state[f"encode_one_hot.{2 * j}.bias"],
            ),
            0.2,
        )
    noise = noise.view(-1, 32, 4, 4)
    for index, _, _ in NOISE:
        noise = _in(
            state,
            f"encode_noise.{index + 2}",
            F.leaky_relu(_conv(state, f"encode_noise.{index}", noise), 0.2),
        )
    out = _in(state, "embed.1", _conv(state, "embed.0", torch.cat((out, noise), 1)))
    for j in range(1, 5):
        h = F.relu(_in(state, f"res{j}.in1", _conv(state, f"res{j}.conv1", out)))
        out = out + _in(state, f"res{j}.in2", _conv(state, f"res{j}.conv2", h))
    for k, _, _ in UP:
        h = F.interpolate(
            F.relu(_in(state, f"deconv{k}.norm_r1", out)), scale_factor=2, mode="nearest"
        )
        h = _conv(
            state,
            f"deconv{k}.conv_r2",
            F.relu(_in(state, f"deconv{k}.norm_r2", _conv(state, f"deconv{k}.conv_r1", h))),
        )
        side = _conv(state, f"deconv{k}.conv_l", F.interpolate(out, scale_factor=2, mode="nearest"))
        out = _in(state, f"in{k}_d", h + side)
    return F.conv2d(out, state["conv_end.0.weight"], state["conv_end.0.bias"], padding=1)  # fmt: skip


# ---------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def official_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("official") / "modelG.pth"
    torch.save(official_state(), path)  # what torch.save(model.state_dict()) writes
    return path


def _inputs(seed: int = 1) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(2, 3, 128, 128, generator=g)  # [0, 1], as the official data loader
    pose = (torch.rand(2, 3, 128, 128, generator=g) > 0.97).float()
    mask = torch.zeros(2, 1, 128, 128)
    mask[:, :, 30:110, 25:103] = 1
    return image, pose, mask, torch.tensor([3, 1199])


def test_converted_generator_reproduces_the_official_forward(official_file: Path, tmp_path) -> None:
    out = tmp_path / "ciagan_official.ckpt"
    assert main([str(official_file), "-o", str(out)]) == 0
    generator, condition, state = load_generator(out)  # weights_only loading, as inference
    generator.eval()
    assert condition == "pose" and generator.num_identities == IDENTITIES
    assert state["deid_config"]["task_name"] == "ciagan_official"
    official = read_official(official_file)
    image, pose, mask, target = _inputs()
    masked = image * (1 - mask)
    with torch.no_grad():
        expected = official_forward(
            official, torch.cat((pose, masked), 1), F.one_hot(target, IDENTITIES).float()
        )
        ours = generator(pose, masked, target)  # fmt: skip
    assert expected.abs().mean() > 0.1  # a real signal, not a degenerate all-zero output
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)
    # the anonymizer passes [-1, 1] images: inpaint converts to the official [0, 1] and back
    with torch.no_grad():
        composite, _ = inpaint(generator, image * 2 - 1, pose, mask, target)
    official_composite = expected * mask + image * (1 - mask)  # test.py's composite
    torch.testing.assert_close(composite, official_composite * 2 - 1, rtol=1e-4, atol=2e-4)


def test_the_converted_checkpoint_runs_as_the_ciagan_anonymizer(
    official_file: Path, tmp_path
) -> None:
    out = tmp_path / "ciagan_official.ckpt"
    main([str(official_file), "-o", str(out)])
    anonymizer = CiaganAnonymizer.from_checkpoint(out, device="cpu", identity=7)
    assert anonymizer.name == "ciagan_official" and anonymizer.image_size == 128
    rng = np.random.default_rng(0)
    mask = np.zeros((128, 128), np.uint8)
    mask[30:110, 25:103] = 255
    item = GeneratorInput(
        subject=0,
        region=None,  # type: ignore[arg-type]  # not pasted here
        image=rng.integers(0, 255, (128, 128, 3), dtype=np.uint8),
        pose=np.zeros((128, 128, 3), np.uint8),
        mask=mask,
    )
    (generated,) = anonymizer.generate([item], [7])
    assert generated.shape == (128, 128, 3) and generated.dtype == np.uint8
    np.testing.assert_array_equal(generated[mask == 0], item.image[mask == 0])  # background kept


def test_shapes_and_keys_are_checked_with_clear_errors() -> None:
    state = official_state(identities=10)
    ours, report = convert_state(state)
    assert report["num_identities"] == 10 and ours["id_mlp.0.weight"].shape == (256, 10)
    assert len(report["dropped"]) == 5 * 2 + 4 * 2 + 5 * 3  # biases an InstanceNorm cancels
    assert "conv0.conv_r2.conv2d.bias" in report["dropped"]
    assert "conv0.conv_r1.conv2d.bias" not in report["dropped"]
    bad = dict(state)
    bad["res2.conv1.conv2d.weight_orig"] = torch.zeros(256, 128, 3, 3)
    with pytest.raises(
        DeidError,
        match=r"res2.conv1.conv2d.weight_orig: shape \(256, 128, 3, 3\).*\(256, 256, 3, 3\)",
    ):
        convert_state(bad)
    missing = {k: v for k, v in state.items() if k != "conv_end.0.bias"}
    with pytest.raises(DeidError, match=r"missing keys \['conv_end.0.bias'\]"):
        convert_state(missing)
    with pytest.raises(DeidError, match=r"unexpected keys \['skip.weight'\]"):
        convert_state({**state, "skip.weight": torch.zeros(1)})
    small = {
        k: v for k, v in state.items() if not k.startswith(("conv0.", "in0_e", "deconv0.", "in0_d"))
    }
    with pytest.raises(DeidError, match="64 px official generator"):
        convert_state(small)


def test_a_pickled_model_is_refused_without_running_it(tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    torch.save(torch.nn.Linear(2, 2), path)  # a whole pickled module: needs code to load
    with pytest.raises(DeidError, match="not a plain state dict"):
        read_official(path)
    assert main([str(tmp_path / "absent.pth"), "-o", str(tmp_path / "x.ckpt")]) == 2
