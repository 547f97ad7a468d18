"""Official taming checkpoints -> our format: parity with the official modules, the restricted
unpickler, size inference, clear errors, and `vqgan.load_checkpoint`.

The official modules come from the `taming-transformers-rom1504` package (code only, installed
--no-deps by `make setup`). Its `taming.models` cannot import here (they import taming's
`main` and Lightning 1.x), so the tests assemble VQModel / Net2NetTransformer state dicts
from its modules, with the official key names, and save them as Lightning 1.0 did.
"""

from __future__ import annotations

import os
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch.nn import functional as F

from deid.errors import DeidError
from vqgan import load_checkpoint
from vqgan.checkpoint import LIGHTNING_KEY, make_bundle
from vqgan.convert_official import ConversionError, convert, main
from vqgan.official_pickle import OfficialCheckpoint, Placeholder, UnsafeCheckpointError

DD = dict(
    double_z=False, z_channels=8, resolution=16, in_channels=3, out_ch=3, ch=32, ch_mult=[1, 2, 2],
    num_res_blocks=1, attn_resolutions=[8], dropout=0.0,
)  # fmt: skip
LABELS = 5
DD_COND = {**DD, "in_channels": LABELS, "out_ch": LABELS}
FIRST_CODES, COND_CODES, EMBED_DIM = 20, 12, 6
GPT_KW = dict(vocab_size=20, block_size=32, n_layer=2, n_head=2, n_embd=16)


@pytest.fixture(scope="module")
def taming() -> types.SimpleNamespace:
    """The official modules. mingpt imports `transformers.top_k_top_p_filtering` (unused by
    GPT) at module level: a stand-in module is put in its place for that import only."""
    stub = types.ModuleType("transformers")
    stub.top_k_top_p_filtering = None
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "transformers", stub)
        from taming.modules.diffusionmodules.model import Decoder, Encoder
        from taming.modules.discriminator.model import NLayerDiscriminator
        from taming.modules.transformer.mingpt import GPT
        from taming.modules.vqvae.quantize import VectorQuantizer2
    return types.SimpleNamespace(
        Encoder=Encoder,
        Decoder=Decoder,
        GPT=GPT,
        Quantizer=VectorQuantizer2,
        Disc=NLayerDiscriminator,
    )


class OfficialVQ(torch.nn.Module):
    """taming's VQModel without Lightning: the same attributes, built from its modules."""

    def __init__(self, taming: types.SimpleNamespace, dd: dict, n_embed: int, labels: int = 0):
        super().__init__()
        self.encoder, self.decoder = taming.Encoder(**dd), taming.Decoder(**dd)
        self.quantize = taming.Quantizer(n_embed, EMBED_DIM, beta=0.25)
        self.quant_conv = torch.nn.Conv2d(dd["z_channels"], EMBED_DIM, 1)
        self.post_quant_conv = torch.nn.Conv2d(EMBED_DIM, dd["z_channels"], 1)
        with torch.no_grad():  # codes among encoder outputs, so inputs use many of them
            z = self.quant_conv(self.encoder(torch.randn(4, dd["in_channels"], 16, 16)))
            z = z.permute(0, 2, 3, 1).reshape(-1, EMBED_DIM)
            self.quantize.embedding.weight.copy_(z[torch.randperm(len(z))[:n_embed]])
        if labels:
            self.register_buffer("colorize", torch.randn(3, labels, 1, 1))

    def indices(self, x: torch.Tensor) -> torch.Tensor:
        z_q, _, (_, _, idx) = self.quantize(self.quant_conv(self.encoder(x)))
        return idx.reshape(z_q.shape[0], z_q.shape[2], z_q.shape[3])

    def decode_indices(self, idx: torch.Tensor) -> torch.Tensor:
        shape = (*idx.shape, EMBED_DIM)
        z_q = self.quantize.get_codebook_entry(idx.reshape(-1), shape=shape)
        return self.decoder(self.post_quant_conv(z_q))


def _prefixed(prefix: str, state: dict) -> OrderedDict:
    return OrderedDict((prefix + k, v) for k, v in state.items())


def lightning_payload(state_dict: OrderedDict) -> dict:
    """A checkpoint dict shaped like Lightning 1.0's, with real pickled class references."""
    from omegaconf import OmegaConf
    from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint

    return {
        "epoch": 7,
        "global_step": 1234,
        "pytorch-lightning_version": "1.0.8",
        "callbacks": {
            ModelCheckpoint: {"best_model_score": torch.tensor(0.5), "best_model_path": "x.ckpt"},
            LearningRateMonitor: {"best": np.float64(0.25)},
        },
        "optimizer_states": [
            {
                "state": {0: {"step": 3, "exp_avg": torch.ones(5), "exp_avg_sq": torch.ones(5)}},
                "param_groups": [{"lr": 4.5e-6, "betas": (0.9, 0.95), "params": [0]}],
            }
        ],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": OmegaConf.create({"lr": 4.5e-6, "layers": [1, 2]}),
        "state_dict": state_dict,
    }


@pytest.fixture(scope="module")
def official(taming: types.SimpleNamespace, tmp_path_factory: pytest.TempPathFactory):
    """An official-format segmentation transformer checkpoint (+ its yaml) and its modules."""
    torch.manual_seed(0)
    first = OfficialVQ(taming, DD, FIRST_CODES).eval()
    cond = OfficialVQ(taming, DD_COND, COND_CODES, labels=LABELS).eval()
    gpt = taming.GPT(**GPT_KW).eval()
    state = OrderedDict()
    state.update(_prefixed("first_stage_model.", first.state_dict()))
    state.update(_prefixed("cond_stage_model.", cond.state_dict()))
    state.update(_prefixed("transformer.", gpt.state_dict()))
    folder = tmp_path_factory.mktemp("official")
    ckpt = folder / "last.ckpt"
    torch.save(lightning_payload(state), ckpt)
    legacy = folder / "legacy.ckpt"
    torch.save(lightning_payload(state), legacy, _use_new_zipfile_serialization=False)
    project = {
        "model": {
            "base_learning_rate": 4.5e-06,
            "target": "taming.models.cond_transformer.Net2NetTransformer",
            "params": {
                "first_stage_key": "image",
                "cond_stage_key": "segmentation",
                "transformer_config": {
                    "target": "taming.modules.transformer.mingpt.GPT",
                    "params": GPT_KW,
                },
                "first_stage_config": {
                    "target": "taming.models.vqgan.VQModel",
                    "params": {"embed_dim": EMBED_DIM, "n_embed": FIRST_CODES, "ddconfig": DD},
                },
                "cond_stage_config": {
                    "target": "taming.models.vqgan.VQSegmentationModel",
                    "params": {
                        "embed_dim": EMBED_DIM,
                        "n_embed": COND_CODES,
                        "n_labels": LABELS,
                        "ddconfig": DD_COND,
                    },
                },
            },
        }
    }
    config = folder / "2021-01-20T16-04-20-project.yaml"
    config.write_text(yaml.safe_dump(project))
    return types.SimpleNamespace(
        first=first, cond=cond, gpt=gpt, ckpt=ckpt, legacy=legacy, config=config, folder=folder
    )


def _onehot(labels: torch.Tensor) -> torch.Tensor:
    return F.one_hot(labels, LABELS).permute(0, 3, 1, 2).float()


def test_converted_checkpoint_reproduces_the_official_modules(official, tmp_path: Path) -> None:
    out = tmp_path / "coco.pt"
    assert main([str(official.ckpt), "--config", str(official.config), "-o", str(out)]) == 0
    torch.load(out, weights_only=True)  # our format needs no code to load
    models = load_checkpoint(out)
    torch.manual_seed(1)
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    labels = torch.randint(0, LABELS, (3, 16, 16))
    tokens = torch.randint(0, GPT_KW["vocab_size"], (3, 31))
    with torch.no_grad():
        idx = models.first_stage.encode_to_indices(x)
        assert idx.dtype == torch.long and idx.shape == (3, 4, 4)
        assert torch.equal(idx, official.first.indices(x))
        assert len(idx.unique()) > 3  # the comparison is not trivially all-equal
        decoded = models.first_stage.decode_indices(idx)
        assert decoded.shape == (3, 3, 16, 16)
        assert (decoded - official.first.decode_indices(idx)).abs().max() < 1e-4
        cidx = models.cond_stage.encode_to_indices(_onehot(labels))
        assert torch.equal(cidx, official.cond.indices(_onehot(labels)))
        assert len(cidx.unique()) > 2
        logits = models.transformer(tokens)
        assert logits.shape == (3, 31, GPT_KW["vocab_size"])
        assert (logits - official.gpt(tokens)[0]).abs().max() < 1e-4


def test_sizes_come_from_shapes_and_dropped_keys_are_listed(official, capsys) -> None:
    bundle = convert(official.ckpt, official.config)
    first = bundle["first_stage"]["config"]
    assert first["ch_mult"] == [1, 2, 2] and first["n_embed"] == FIRST_CODES
    assert first["attn_resolutions"] == [8] and first["z_channels"] == 8 and first["legacy_beta"]
    assert bundle["cond_stage"]["config"]["in_channels"] == LABELS
    assert bundle["transformer"]["config"] == {
        **GPT_KW,
        "embd_pdrop": 0.0,
        "resid_pdrop": 0.0,
        "attn_pdrop": 0.0,
    }
    assert bundle["discriminator"] is None
    meta = bundle["meta"]
    assert meta["dropped_keys"] == [
        "cond_stage_model.colorize",
        "transformer.blocks.0.attn.mask",
        "transformer.blocks.1.attn.mask",
    ]
    assert {"callbacks", "optimizer_states", "epoch", "hyper_parameters"} <= set(
        meta["ignored_entries"]
    )
    # without a yaml the sizes still come out (resolution defaults to 256), heads given by hand
    bare = convert(official.ckpt, n_head=2)
    assert bare["first_stage"]["config"]["attn_resolutions"] == [128]
    assert bare["first_stage"]["config"]["ch_mult"] == [1, 2, 2]


def test_legacy_torch_format_reads_the_same(official) -> None:
    zipped, legacy = (
        convert(official.ckpt, official.config),
        convert(official.legacy, official.config),
    )
    for stage in ("first_stage", "cond_stage", "transformer"):
        a, b = zipped[stage]["state_dict"], legacy[stage]["state_dict"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_class_references_become_inert_placeholders(official) -> None:
    with OfficialCheckpoint(official.ckpt) as ckpt:
        callbacks = ckpt.payload["callbacks"]
        keys = sorted(k.qualname for k in callbacks)
        assert keys == [
            "pytorch_lightning.callbacks.lr_monitor.LearningRateMonitor",
            "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
        ]
        assert all(isinstance(k, type) and issubclass(k, Placeholder) for k in callbacks)
        assert isinstance(ckpt.payload["hyper_parameters"], Placeholder)
        weight = ckpt.payload["state_dict"]["transformer.tok_emb.weight"]
        assert tuple(weight.shape) == (20, 16)  # lazily: shape known, data not read
        assert torch.equal(ckpt.materialize(weight), official.gpt.tok_emb.weight)


def test_classes_that_no_longer_exist_are_read_without_importing(tmp_path: Path) -> None:
    """Lightning 1.0 class paths are gone from Lightning 2; the reader never imports them."""
    module = types.ModuleType("pytorch_lightning.callbacks.gone_in_v2")

    class OldCallback:
        pass

    OldCallback.__module__ = module.__name__
    OldCallback.__qualname__ = "OldCallback"
    module.OldCallback = OldCallback
    ckpt = tmp_path / "old.ckpt"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, module.__name__, module)
        torch.save({"callbacks": {OldCallback: {"k": 1}}, "state_dict": {"w": torch.ones(1)}}, ckpt)
    with OfficialCheckpoint(ckpt) as read:
        (key,) = read.payload["callbacks"]
        assert key.qualname == "pytorch_lightning.callbacks.gone_in_v2.OldCallback"
    assert module.__name__ not in sys.modules


def test_wrong_shape_is_a_clear_error(official, tmp_path: Path) -> None:
    with OfficialCheckpoint(official.ckpt) as ckpt:
        state = ckpt.materialize(ckpt.payload["state_dict"])
    state["first_stage_model.decoder.mid.block_1.conv1.weight"] = torch.zeros(64, 64, 3, 1)
    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": state}, bad)
    with pytest.raises(ConversionError) as err:
        convert(bad, official.config)
    message = str(err.value)
    assert "decoder.mid.block_1.conv1.weight" in message
    assert "(64, 64, 3, 1)" in message and "(64, 64, 3, 3)" in message
    state["first_stage_model.decoder.mid.block_1.conv1.weight"] = torch.zeros(64, 64, 3, 3)
    del state["transformer.ln_f.bias"]
    torch.save({"state_dict": state}, bad)
    with pytest.raises(ConversionError, match="missing.*ln_f.bias"):
        convert(bad, official.config)


def test_heads_cannot_come_from_shapes(official) -> None:
    with pytest.raises(ConversionError, match="--n-head"):
        convert(official.ckpt)


def test_yaml_that_contradicts_the_weights_is_refused(official, tmp_path: Path) -> None:
    project = yaml.safe_load(official.config.read_text())
    project["model"]["params"]["first_stage_config"]["params"]["ddconfig"]["attn_resolutions"] = [
        16
    ]
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump(project))
    with pytest.raises(ConversionError, match="attention"):
        convert(official.ckpt, wrong)


def test_standalone_vqgan_keeps_the_discriminator_and_drops_lpips(taming, tmp_path: Path) -> None:
    torch.manual_seed(2)
    model = OfficialVQ(taming, DD, FIRST_CODES).eval()
    disc = taming.Disc(input_nc=3, ndf=8, n_layers=2).eval()
    state = OrderedDict(model.state_dict())
    lpips = {
        "scaling_layer.shift": torch.zeros(1, 3, 1, 1),
        "net.slice1.0.weight": torch.zeros(64, 3, 3, 3),
        "lin0.model.1.weight": torch.zeros(1, 64, 1, 1),
    }
    state.update(_prefixed("loss.perceptual_loss.", lpips))
    state.update(_prefixed("loss.discriminator.", disc.state_dict()))
    ckpt = tmp_path / "vqgan.ckpt"
    torch.save(lightning_payload(state), ckpt)
    bundle = convert(ckpt)
    assert bundle["cond_stage"] is None and bundle["transformer"] is None
    assert bundle["discriminator"]["config"] == {"in_channels": 3, "ndf": 8, "n_layers": 2}
    assert bundle["meta"]["dropped_keys"] == sorted("loss.perceptual_loss." + k for k in lpips)
    models = load_checkpoint(bundle)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(models.first_stage.encode_to_indices(x), model.indices(x))
        assert (models.discriminator(x) - disc(x)).abs().max() < 1e-5


def test_segmentation_vq_model_becomes_the_condition_stage(taming, tmp_path: Path) -> None:
    model = OfficialVQ(taming, DD_COND, COND_CODES, labels=LABELS)
    ckpt = tmp_path / "seg.ckpt"
    torch.save({"state_dict": model.state_dict(), "epoch": 1}, ckpt)
    bundle = convert(ckpt)
    assert (
        bundle["first_stage"] is None and bundle["cond_stage"]["config"]["out_channels"] == LABELS
    )
    assert bundle["meta"]["dropped_keys"] == ["colorize"]


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("zipped", [True, False])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path, zipped: bool) -> None:
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.ckpt"
    payload = {"state_dict": OrderedDict(w=torch.ones(2)), "callbacks": _Evil(marker)}
    torch.save(payload, ckpt, _use_new_zipfile_serialization=zipped)
    with pytest.raises(UnsafeCheckpointError, match=r"system.*nothing was run"):
        convert(ckpt, n_head=1)
    with pytest.raises(DeidError, match="convert_official"):
        load_checkpoint(ckpt)  # our loader: weights_only, refuses too
    assert not marker.exists()
    # a bare pickle calling eval is refused as well
    evil = tmp_path / "eval.pkl"
    evil.write_bytes(b"\x80\x02cbuiltins\neval\nX\x10\x00\x00\x00print('pwned!!')\x85R.")
    with pytest.raises(UnsafeCheckpointError, match="builtins.eval"):
        OfficialCheckpoint(evil)


def test_load_checkpoint_reads_a_lightning_checkpoint_with_our_entry(
    official, tmp_path: Path
) -> None:
    models = load_checkpoint(convert(official.ckpt, official.config))
    bundle = make_bundle(first_stage=models.first_stage, meta={"perceptual": "lpips_vgg"})
    state = {f"model.{k}": v for k, v in bundle["first_stage"]["state_dict"].items()}
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": state, "deid_config": {"x": 1}, LIGHTNING_KEY: bundle}, ckpt)
    alone = tmp_path / "alone.pt"
    torch.save({"state_dict": state}, alone)
    assert ckpt.stat().st_size < 1.2 * alone.stat().st_size  # tensors stored once
    loaded = load_checkpoint(ckpt)
    assert loaded.meta == {"perceptual": "lpips_vgg"} and loaded.transformer is None
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(
            loaded.first_stage.encode_to_indices(x), models.first_stage.encode_to_indices(x)
        )
    torch.save({"state_dict": state, "deid_config": {}}, ckpt)
    with pytest.raises(DeidError, match=LIGHTNING_KEY):
        load_checkpoint(ckpt)
    broken = dict(bundle, first_stage={"config": bundle["first_stage"]["config"], "state_dict": {}})
    with pytest.raises(DeidError, match="do not fit"):
        load_checkpoint(broken)
