"""VQGAN training: every vqgan_* experiment composes and runs, gradients reach exactly the
trainable networks, a tiny batch overfits, resume is exact, and the checkpoints load as
bundles (the transformer's with all three networks). Real demo photos (MediaPipe masks) and
a tiny COCO set in the official layout (with COCO-Stuff maps) through the real pipeline."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from training_helpers import CrashAt, LossRecorder, fit
from vqgan_tiny import (
    TINY_CONFIG,
    TINY_DATA,
    TINY_FIRST,
    TINY_TRANSFORMER,
    TINY_VQ,
    build_tiny_coco,
    build_tiny_demo,
)

from deid.errors import DeidError
from deid.training import build, train
from vqgan import load_checkpoint
from vqgan.checkpoint import make_bundle, save_bundle
from vqgan.nets import VQAutoencoder, VQConfig

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("vqgan_*.yaml"))
DEMO_STAGES = ("vqgan_demo_first", "vqgan_demo_cond")


def _compose(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


@pytest.fixture(scope="module")
def vq_root(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project-like folder: `data/` with a tiny demo set and a tiny COCO train split,
    `outputs/vqgan_demo_first|cond/` with short runs of the two demo stages (where
    vqgan_demo_transformer looks for them), and `stages/` with tiny f=16 stage checkpoints in
    our converted format (what the COCO transformer takes)."""
    root = tmp_path_factory.mktemp("vqroot")
    build_tiny_demo(demo_root, root / "data" / "demo")
    build_tiny_coco(root / "data" / "coco")
    for experiment in DEMO_STAGES:
        cfg = _compose(
            [
                f"experiment={experiment}",
                "trainer.max_steps=2",
                "logger=csv",
                "datamodule.batch_size=4",
                f"paths.data_dir={root / 'data'}",
                f"paths.output_dir={root / 'outputs' / experiment}",
            ]
        )
        train(cfg)
    torch.manual_seed(0)
    first = VQAutoencoder(VQConfig.from_dict({**TINY_CONFIG, "resolution": 64}))
    cond = VQAutoencoder(
        VQConfig.from_dict(
            {**TINY_CONFIG, "resolution": 64, "in_channels": 183, "out_channels": 183}
        )
    )
    save_bundle(make_bundle(first_stage=first), root / "stages" / "first.pt")
    save_bundle(make_bundle(cond_stage=cond), root / "stages" / "cond.pt")
    return root


def _experiment_overrides(experiment: str, root: Path) -> list[str]:
    """Tiny sizes for the COCO-size experiments; the demo ones run as they are."""
    stages = [
        f"module.first_stage={root / 'stages' / 'first.pt'}",
        f"module.cond_stage={root / 'stages' / 'cond.pt'}",
    ]
    return {
        "vqgan_coco": [*TINY_DATA, *TINY_FIRST],
        "vqgan_coco_cond": [*TINY_DATA, *TINY_VQ],
        "vqgan_coco_transformer": [*TINY_DATA, *TINY_TRANSFORMER, *stages],
        "vqgan_demo_first": ["datamodule.batch_size=2"],
        "vqgan_demo_cond": ["datamodule.batch_size=2"],
        "vqgan_demo_transformer": ["datamodule.batch_size=2", f"paths.root_dir={root}"],
    }[experiment]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_vqgan_experiment_runs_fast_dev_run(
    experiment: str, vq_root: Path, tmp_path: Path
) -> None:
    cfg = _compose(
        [
            f"experiment={experiment}",
            "trainer=cpu",
            "trainer.fast_dev_run=true",
            "logger=csv",
            f"paths.data_dir={vq_root / 'data'}",
            f"paths.output_dir={tmp_path}",
            *_experiment_overrides(experiment, vq_root),
        ]
    )
    assert cfg.trainer.accelerator == "cpu" and cfg.task_name == experiment
    metrics = train(cfg)
    assert (tmp_path / "config.yaml").is_file()
    losses = [v for k, v in metrics.items() if k.endswith(("total_loss", "ce_loss"))]
    assert losses and all(math.isfinite(v) for v in losses)
    assert list((tmp_path / "samples").glob("step_*.png"))


def test_the_experiments_carry_the_papers_settings() -> None:
    first = _compose(["experiment=vqgan_coco"])
    assert list(first.module.vq.ch_mult) == [1, 1, 2, 2, 4] and first.module.vq.ch == 128
    assert first.module.vq.n_embed == 8192 and first.module.vq.embed_dim == 256
    assert list(first.module.vq.attn_resolutions) == [16] and first.module.vq.num_res_blocks == 2
    assert list(first.module.optimizer.betas) == [0.5, 0.9]
    assert first.datamodule.preprocess.labels == "cocostuff" and first.data.split == "train"
    cond = _compose(["experiment=vqgan_coco_cond"])
    assert cond.module.vq.n_embed == 1024 and cond.module._target_.endswith("SegmentationVQModule")
    gpt = _compose(["experiment=vqgan_coco_transformer"]).module
    assert (gpt.transformer.n_layer, gpt.transformer.n_embd, gpt.transformer.n_head) == (
        32,
        1280,
        16,
    )
    assert (gpt.transformer.block_size, gpt.transformer.vocab_size) == (512, 8192)
    assert list(gpt.optimizer.betas) == [0.9, 0.95] and gpt.optimizer.weight_decay == 0.01
    demo = _compose(["experiment=vqgan_demo_transformer", "paths.root_dir=/p"]).module
    assert demo.first_stage == "/p/outputs/vqgan_demo_first/checkpoints/last.ckpt"
    assert demo.cond_stage == "/p/outputs/vqgan_demo_cond/checkpoints/last.ckpt"


def test_missing_stage_checkpoints_are_one_line_errors(vq_root: Path, tmp_path: Path) -> None:
    common = ["logger=csv", f"paths.data_dir={vq_root / 'data'}", f"paths.output_dir={tmp_path}"]
    with pytest.raises(DeidError, match=r"module.first_stage=.*experiment=vqgan_demo_first"):
        build(
            _compose(["experiment=vqgan_demo_transformer", f"paths.root_dir={tmp_path}", *common])
        )
    with pytest.raises(DeidError, match=r"needs its first stage: add module.first_stage="):
        build(_compose(["experiment=vqgan_coco_transformer", *TINY_DATA, *common]))


# ---------------------------------------------------------------- modules on a fixed batch


def _tiny(experiment: str, root: Path, tmp_path: Path, extra: list[str] = ()) -> tuple:
    cfg = _compose(
        [
            f"experiment={experiment}",
            "trainer=cpu",
            "trainer.precision=32-true",
            "logger=csv",
            f"paths.data_dir={root / 'data'}",
            f"paths.output_dir={tmp_path}",
            *_experiment_overrides(experiment, root),
            *extra,
        ]
    )
    datamodule, module, trainer = build(cfg)
    datamodule.setup("fit")
    return cfg, datamodule, module


def _batch(datamodule, size: int = 4) -> dict[str, torch.Tensor]:
    from torch.utils.data import default_collate

    items = [datamodule.train_set[(i, 100 + i)] for i in range(size)]
    return {k: v for k, v in default_collate(items).items() if k != "index"}


def _grads(module: torch.nn.Module) -> dict[str, torch.Tensor | None]:
    return {name: p.grad for name, p in module.named_parameters()}


def test_every_trainable_parameter_gets_a_gradient(vq_root: Path, tmp_path: Path) -> None:
    from vqgan.data import onehot

    extra = ["module.loss.disc_start=0"]  # the GAN term (adaptive weight) in the graph too
    _, dm, first = _tiny("vqgan_coco", vq_root, tmp_path / "a", extra)
    batch = _batch(dm)
    xrec, quantized, _ = first.reconstruct(batch["image"])
    first.discriminator_loss(batch["image"], xrec)[0].backward()
    assert all(g is None for g in _grads(first.autoencoder).values()), "D step reached the AE"
    first.discriminator.zero_grad(set_to_none=True)
    first.generator_loss(batch["image"], xrec, quantized)[0].backward()
    for name, grad in _grads(first.autoencoder).items():
        assert grad is not None and grad.abs().sum() > 0, f"first stage: {name}"
    d_grads = _grads(first.discriminator)
    assert all(g is not None and g.abs().sum() > 0 for g in d_grads.values())  # via the GAN term

    _, dm, cond = _tiny("vqgan_coco_cond", vq_root, tmp_path / "b")
    target = onehot(_batch(dm)["labels"], cond.num_labels)
    logits, quantized, _ = cond.reconstruct(target)
    cond.segmentation_loss(target, logits, quantized)[0].backward()
    for name, grad in _grads(cond.autoencoder).items():
        assert grad is not None and grad.abs().sum() > 0, f"condition stage: {name}"

    _, dm, gpt = _tiny("vqgan_coco_transformer", vq_root, tmp_path / "c", ["module.pkeep=0.5"])
    gpt.train()
    assert gpt.transformer.training and not gpt.first_stage.training
    assert not gpt.cond_stage.training  # frozen stages stay in eval under train()
    cond_tokens, image_tokens = gpt.encode(_batch(dm))
    assert cond_tokens.shape == image_tokens.shape == (4, 16)
    gpt.token_loss(cond_tokens, image_tokens)[0].backward()
    for name, grad in _grads(gpt.transformer).items():
        assert grad is not None and grad.abs().sum() > 0, f"transformer: {name}"
    for stage in (gpt.first_stage, gpt.cond_stage):
        assert all(not p.requires_grad and p.grad is None for p in stage.parameters())


def test_transformer_optimizer_decays_linear_weights_only(vq_root: Path, tmp_path: Path) -> None:
    _, _, gpt = _tiny("vqgan_coco_transformer", vq_root, tmp_path)
    decay, plain = gpt.configure_optimizers().param_groups
    assert decay["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0
    names = {id(p): n for n, p in gpt.transformer.named_parameters()}
    assert all(names[id(p)].endswith(".weight") for p in decay["params"])
    assert {"pos_emb", "tok_emb.weight", "ln_f.weight", "head.weight"} & {
        names[id(p)] for p in plain["params"]
    } == {"pos_emb", "tok_emb.weight", "ln_f.weight"}
    assert isinstance(gpt.configure_optimizers(), torch.optim.AdamW)
    assert len(decay["params"]) + len(plain["params"]) == len(list(gpt.transformer.parameters()))


def test_overfitting_a_tiny_batch_lowers_each_loss(vq_root: Path, tmp_path: Path) -> None:
    from vqgan.data import onehot

    torch.manual_seed(0)
    lr = ["module.optimizer.lr=2e-3", "module.optimizer.scale_lr=false"]
    _, dm, first = _tiny("vqgan_coco", vq_root, tmp_path / "a", [*lr, "module.loss.disc_start=0"])
    batch = _batch(dm)
    opt_ae, opt_d = first.configure_optimizers()
    history = []
    for _ in range(30):
        xrec, quantized, _ = first.reconstruct(batch["image"])
        loss, logs = first.generator_loss(batch["image"], xrec, quantized)
        opt_ae.zero_grad(set_to_none=True)
        loss.backward()
        opt_ae.step()
        d_loss, _ = first.discriminator_loss(batch["image"], xrec)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        history.append({"l1": float(logs["l1_loss"])})
    # the discriminator alone against fixed fakes: in the joint loop above the generator
    # fights back, so its loss need not fall there (it did not on CI's CPU)
    with torch.no_grad():
        fakes = first.reconstruct(batch["image"])[0]
    for step in range(30):
        d_loss, _ = first.discriminator_loss(batch["image"], fakes)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        history[step]["disc"] = float(d_loss)
    _, dm, cond = _tiny("vqgan_coco_cond", vq_root, tmp_path / "b", lr)
    target = onehot(_batch(dm)["labels"], cond.num_labels)
    (opt,) = [cond.configure_optimizers()]
    for step in range(30):
        logits, quantized, _ = cond.reconstruct(target)
        loss, logs = cond.segmentation_loss(target, logits, quantized)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history[step]["bce"] = float(logs["bce_loss"])
    _, dm, gpt = _tiny("vqgan_coco_transformer", vq_root, tmp_path / "c", lr)
    tokens = gpt.encode(_batch(dm))
    opt = gpt.configure_optimizers()
    for step in range(30):
        loss, _ = gpt.token_loss(*tokens)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history[step]["ce"] = float(loss)
    for key in ("l1", "disc", "bce", "ce"):
        first_five = sum(h[key] for h in history[:5]) / 5
        last_five = sum(h[key] for h in history[-5:]) / 5
        assert last_five < 0.8 * first_five, f"{key}: {first_five:.4f} -> {last_five:.4f}"


# ---------------------------------------------------------------- resume and checkpoints


@pytest.mark.parametrize(
    ("experiment", "per_step", "extra"),
    [
        # the discriminator starts mid-run and unused codes are restarted: both must resume
        (
            "vqgan_coco",
            2,
            [
                "module.loss.disc_start=2",
                "module.codebook.init=data",
                "module.codebook.restart_every=2",
            ],
        ),
        ("vqgan_coco_transformer", 1, ["module.pkeep=0.7"]),  # seeded token corruption
    ],
)
def test_kill_and_resume_continues_with_identical_losses(
    experiment: str, per_step: int, extra: list[str], vq_root: Path, tmp_path: Path
) -> None:
    common = [
        f"experiment={experiment}",
        "trainer=cpu",
        "trainer.precision=32-true",
        "logger=csv",
        f"trainer.max_steps={5 * per_step}",
        f"callbacks.model_checkpoint.every_n_train_steps={per_step}",  # last.ckpt every step
        "callbacks.sample_grids.every_n_steps=0",
        f"paths.data_dir={vq_root / 'data'}",
        *_experiment_overrides(experiment, vq_root),
        *extra,
    ]
    reference = LossRecorder("step")
    fit(_compose([*common, f"paths.output_dir={tmp_path / 'ref'}"]), reference)
    assert sorted(reference.logs) == [1, 2, 3, 4, 5]
    crashed = tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(_compose([*common, f"paths.output_dir={crashed}"]), CrashAt(3, "step"))
    last = crashed / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=True)  # loads safely
    assert state["vqgan_step"] == 3 and "deid_config" in state and "deid_vqgan" in state
    resumed = LossRecorder("step")
    fit(_compose([*common, f"paths.output_dir={tmp_path / 'res'}"]), resumed, ckpt_path=str(last))
    assert resumed.first == 3 and sorted(resumed.logs) == [4, 5]
    for step in (4, 5):
        for key, value in reference.logs[step].items():
            assert resumed.logs[step][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_stage_checkpoints_load_as_bundles(vq_root: Path) -> None:
    first = load_checkpoint(vq_root / "outputs" / "vqgan_demo_first" / "checkpoints" / "last.ckpt")
    assert first.first_stage is not None and first.cond_stage is None
    assert first.meta["perceptual"] == "none" and first.meta["image_size"] == 64
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    indices = first.first_stage.encode_to_indices(images)
    assert indices.shape == (2, 8, 8) and indices.dtype == torch.long
    assert first.first_stage.decode_indices(indices).shape == (2, 3, 64, 64)
    cond = load_checkpoint(vq_root / "outputs" / "vqgan_demo_cond" / "checkpoints" / "last.ckpt")
    assert cond.cond_stage.config.in_channels == 2
    assert cond.meta["condition"] == {
        "num_labels": 2,
        "kind": "person",
        "background_label": 0,
        "person_label": 1,
    }


def test_transformer_checkpoint_is_a_complete_bundle(vq_root: Path, tmp_path: Path) -> None:
    cfg = _compose(
        [
            "experiment=vqgan_demo_transformer",
            "trainer.max_steps=2",
            "logger=csv",
            "datamodule.batch_size=2",
            f"paths.root_dir={vq_root}",
            f"paths.data_dir={vq_root / 'data'}",
            f"paths.output_dir={tmp_path}",
        ]
    )
    train(cfg)
    path = tmp_path / "checkpoints" / "last.ckpt"
    models = load_checkpoint(path)
    assert models.first_stage is not None and models.cond_stage is not None
    assert models.transformer is not None and models.meta["token_grid"] == [8, 8]
    assert models.meta["perceptual"] == "none"  # the first stage's, carried over
    state = torch.load(path, map_location="cpu", weights_only=True)
    stage = state["deid_vqgan"]["first_stage"]["state_dict"]
    trained = load_checkpoint(
        vq_root / "outputs" / "vqgan_demo_first" / "checkpoints" / "last.ckpt"
    )
    for key, value in trained.first_stage.state_dict().items():
        assert torch.equal(stage[key], value), key  # frozen: the first stage's own weights
    labels = torch.zeros(1, 2, 64, 64)
    labels[:, 0], labels[:, 1, 16:, 20:44] = 1.0, 1.0
    labels[:, 0, 16:, 20:44] = 0.0
    cond = models.cond_stage.encode_to_indices(labels).flatten(1)
    image = models.first_stage.encode_to_indices(torch.zeros(1, 3, 64, 64)).flatten(1)
    logits = models.transformer(torch.cat([cond, image], 1)[:, :-1])
    assert logits.shape == (1, 127, models.transformer.config.vocab_size)
    assert list((tmp_path / "samples").glob("step_*.png"))


# ---------------------------------------------------------------- processes


def _run(args: list[str], cwd: Path, timeout: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_demo_stages_in_order_from_the_command_line(vq_root: Path, tmp_path: Path) -> None:
    """`python train.py experiment=vqgan_demo_*` in order, in a fresh folder: the transformer
    finds both stages under outputs/ by itself and leaves checkpoints and grids."""
    steps = {"vqgan_demo_first": 20, "vqgan_demo_cond": 10, "vqgan_demo_transformer": 10}
    for experiment, max_steps in steps.items():
        result = _run(
            [
                str(ROOT / "train.py"),
                f"experiment={experiment}",
                f"trainer.max_steps={max_steps}",
                "datamodule.batch_size=4",
                f"paths.data_dir={vq_root / 'data'}",
            ],
            tmp_path,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        run = tmp_path / "outputs" / experiment
        assert (run / "checkpoints" / "last.ckpt").is_file()
        assert list((run / "samples").glob("step_*.png"))
    models = load_checkpoint(
        tmp_path / "outputs" / "vqgan_demo_transformer" / "checkpoints" / "last.ckpt"
    )
    assert models.transformer is not None and models.first_stage is not None


@pytest.mark.slow
def test_two_process_ddp_on_cpu_trains_the_first_stage(vq_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "ddp"
    result = _run(
        [
            str(ROOT / "train.py"),
            "experiment=vqgan_coco",
            *TINY_DATA,
            *TINY_FIRST,
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.sync_batchnorm=false",  # the PatchGAN's BatchNorm syncs on GPUs only
            "trainer.precision=32-true",
            "trainer.max_steps=6",
            "logger=csv",
            "module.loss.disc_start=1",
            "module.codebook.init=data",
            "module.codebook.restart_every=2",
            "callbacks.model_checkpoint.every_n_train_steps=2",
            f"paths.data_dir={vq_root / 'data'}",
            f"hydra.run.dir={run_dir}",
        ],
        ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "distributed_backend=gloo" in result.stderr + result.stdout
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["vqgan_step"] == 3 and state["global_step"] == 6


def test_every_experiment_is_run_by_one_of_the_experiment_tests() -> None:
    from test_ciagan_training import EXPERIMENTS as CIAGAN_EXPERIMENTS

    every = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
    assert sorted([*CIAGAN_EXPERIMENTS, *EXPERIMENTS]) == every
