"""CIAGAN training: experiments compose and run, gradients reach every network, resume is
exact, DDP and submitit sweeps work. Real faces (the demo photos) through the real pipeline."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ciagan_tiny import PLAIN_CIAGAN, TINY_GAN
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from training_helpers import CrashAt, LossRecorder, fit

from deid.training import build, train

ROOT = Path(__file__).resolve().parents[1]
# vqgan_* experiments run in tests/test_vqgan_train.py: they need a COCO fixture, tiny sizes for
# the COCO ones and stage checkpoints for the transformers (it checks that it covers them all)
EXPERIMENTS = sorted(
    p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml") if not p.stem.startswith("vqgan_")
)


def _compose(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def _paths(data_dir: Path, out: Path) -> list[str]:
    return [f"paths.data_dir={data_dir}", f"paths.output_dir={out}"]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_fast_dev_run_on_cpu(
    experiment: str, tiny_data_dir: Path, tmp_path: Path
) -> None:
    cfg = _compose(
        [
            f"experiment={experiment}",
            "trainer=cpu",
            "trainer.fast_dev_run=true",
            "datamodule.batch_size=2",
            "datamodule.num_workers=0",
            "logger=csv",
            *_paths(tiny_data_dir, tmp_path),
        ]
    )
    assert cfg.trainer.accelerator == "cpu"
    metrics = train(cfg)
    assert (tmp_path / "config.yaml").is_file()
    if cfg.module._target_.endswith("IdentityPretrainModule"):
        assert 0.0 <= metrics["val/recall@1"] <= 1.0  # Recall@1 on the validation identities
    if cfg.module._target_.endswith("CiaganModule"):
        assert math.isfinite(metrics["generator/total"])
        assert list((tmp_path / "samples").glob("*.png"))


def test_paper_settings_are_in_the_celeba_experiment() -> None:
    cfg = _compose(["experiment=ciagan_celeba"])
    assert cfg.module.optimizer.lr == 1e-5 and list(cfg.module.optimizer.betas) == [0.5, 0.9]
    assert cfg.trainer.max_epochs == 60 and cfg.datamodule.image_size == 128
    assert cfg.data.split == "ciagan" and cfg.module.loss.margin == 3.0
    assert _compose(["experiment=ciagan_ablation_classifier"]).module.identity.kind == "classifier"
    assert _compose(["experiment=ciagan_ablation_faces"]).module.condition == "face"


def _tiny_module(tiny_data_dir: Path, tmp_path: Path, extra: list[str] = ()) -> tuple:
    cfg = _compose(
        [
            *PLAIN_CIAGAN,
            *TINY_GAN,
            *_paths(tiny_data_dir, tmp_path),
            "logger=csv",
            *extra,
        ]
    )
    datamodule, module, trainer = build(cfg)
    datamodule.setup("fit")
    return cfg, datamodule, module


def _fixed_batch(datamodule, size: int = 4) -> dict[str, torch.Tensor]:
    from torch.utils.data import default_collate

    dataset = datamodule.train_set
    return default_collate([dataset[(i, 1000 + i)] for i in range(size)])


def test_every_trainable_parameter_gets_a_gradient(tiny_data_dir: Path, tmp_path: Path) -> None:
    for kind in ("siamese", "classifier"):
        _, datamodule, module = _tiny_module(
            tiny_data_dir, tmp_path / kind, [f"module.identity.kind={kind}"]
        )
        batch = _fixed_batch(datamodule)
        fake, _ = module.generate(
            batch["image"], batch["pose"], batch["mask"], batch["target_label"]
        )
        module.discriminator_loss(batch, fake)[0].backward()
        assert all(p.grad is None for p in module.generator.parameters()), "D step reached G"
        module.generator_loss(batch, fake)[0].backward()
        module.identity_loss(batch)[0].backward()
        for name, param in module.named_parameters():
            if param.requires_grad:
                assert param.grad is not None, f"{kind}: {name} got no gradient"
                assert torch.isfinite(param.grad).all(), f"{kind}: {name} has a non-finite gradient"
                # the contrastive loss sees only differences of two embeddings of one network,
                # so the last layer's bias cancels out: a zero gradient is correct there
                cancels = kind == "siamese" and name == "identity_net.head.bias"
                if not cancels:
                    assert param.grad.abs().sum() > 0, f"{kind}: {name} has an all-zero gradient"


def test_composite_keeps_the_background_outside_the_mask(
    tiny_data_dir: Path, tmp_path: Path
) -> None:
    _, datamodule, module = _tiny_module(tiny_data_dir, tmp_path)
    batch = _fixed_batch(datamodule)
    fake, raw = module.generate(batch["image"], batch["pose"], batch["mask"], batch["target_label"])
    outside = batch["mask"].expand_as(fake) == 0
    assert torch.equal(fake[outside], batch["image"][outside])
    assert 0.05 < batch["mask"].mean() < 0.8  # the face mask covers a real face, not all or nothing


def test_kill_and_resume_continues_with_identical_losses(
    tiny_data_dir: Path, tmp_path: Path
) -> None:
    common = [
        *PLAIN_CIAGAN,
        *TINY_GAN,
        "logger=csv",
        "trainer.max_steps=12",  # 4 iterations x 3 optimizer steps
        "callbacks.model_checkpoint.every_n_train_steps=3",  # last.ckpt after every iteration
        "callbacks.sample_grids.every_n_iterations=0",
        f"paths.data_dir={tiny_data_dir}",
    ]
    reference = LossRecorder("iteration")
    fit(_compose([*common, f"paths.output_dir={tmp_path / 'ref'}"]), reference)
    assert sorted(reference.logs) == [1, 2, 3, 4]

    crashed = tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(_compose([*common, f"paths.output_dir={crashed}"]), CrashAt(2, "iteration"))
    last = crashed / "checkpoints" / "last.ckpt"
    assert last.is_file()
    state = torch.load(last, map_location="cpu", weights_only=True)  # loads safely
    assert state["ciagan_iteration"] == 2 and "deid_config" in state

    resumed = LossRecorder("iteration")
    fit(
        _compose([*common, f"paths.output_dir={tmp_path / 'resumed'}"]),
        resumed,
        ckpt_path=str(last),
    )
    assert resumed.first == 2
    assert sorted(resumed.logs) == [3, 4]
    for iteration in (3, 4):
        for key, value in reference.logs[iteration].items():
            assert resumed.logs[iteration][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_overfitting_one_batch_lowers_the_losses(tiny_data_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    _, datamodule, module = _tiny_module(
        tiny_data_dir, tmp_path, ["module.optimizer.lr=1e-3", "module.loss.reconstruction=1.0"]
    )
    batch = _fixed_batch(datamodule, 4)
    opt_identity, opt_d, opt_g = module.configure_optimizers()

    def step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> float:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss)

    history = []
    for _ in range(40):  # the module's own losses, in training_step's order
        logs = {"identity": step(opt_identity, module.identity_loss(batch)[0])}
        fake, _ = module.generate(
            batch["image"], batch["pose"], batch["mask"], batch["target_label"]
        )
        logs["discriminator"] = step(opt_d, module.discriminator_loss(batch, fake)[0])
        loss, parts = module.generator_loss(batch, fake)
        step(opt_g, loss)
        logs["reconstruction"] = float(parts["reconstruction_l1"])
        history.append(logs)
    for key in ("identity", "discriminator", "reconstruction"):
        first = sum(h[key] for h in history[:5]) / 5
        last = sum(h[key] for h in history[-5:]) / 5
        assert last < 0.7 * first, f"{key}: {first:.4f} -> {last:.4f}"


def _run(args: list[str], cwd: Path, timeout: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_two_process_ddp_on_cpu_trains(tiny_data_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "ddp"
    result = _run(
        [
            str(ROOT / "train.py"),
            *PLAIN_CIAGAN,
            *TINY_GAN,
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.max_steps=6",
            "logger=csv",
            "callbacks.model_checkpoint.every_n_train_steps=3",
            f"paths.data_dir={tiny_data_dir}",
            f"hydra.run.dir={run_dir}",
        ],
        ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "distributed_backend=gloo" in result.stderr + result.stdout
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["ciagan_iteration"] == 2 and state["global_step"] == 6


def test_submitit_local_multirun_runs_two_jobs(tiny_data_dir: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = _run(
        [
            str(ROOT / "train.py"),
            "-m",
            "hydra/launcher=submitit_local",
            "seed=1,2",
            *PLAIN_CIAGAN,
            *TINY_GAN,
            "trainer.fast_dev_run=true",
            "logger=csv",
            f"paths.data_dir={tiny_data_dir}",
            f"hydra.sweep.dir={sweep}",
        ],
        ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for job in ("0", "1"):
        assert (sweep / job / "config.yaml").is_file(), f"job {job} did not run"
        assert list((sweep / job / "samples").glob("*.png"))
    assert (sweep / ".submitit").is_dir()
