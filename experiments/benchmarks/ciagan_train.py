"""CIAGAN training and preprocessing speed on this machine.

    .venv/bin/python experiments/benchmarks/ciagan_train.py [--device cpu|cuda] [--iterations 3]
        [--settings eager,channels_last,bf16,compile] [--skip-preprocess]

Training: images/s of one full iteration (identity step + discriminator step + generator
step, as `CiaganModule.training_step` runs them under Lightning) with the paper's networks at
128 px, batch 16, 1,200 identities, on synthetic batches (speed does not depend on pixels).
Every setting runs in this process after one warm-up iteration; ratios are against eager fp32.
Preprocessing: images/s of `python -m deid.prep.faces` on the demo photos with 1 and 2
worker processes (fresh output folders, dlib HOG + landmarks + crops written).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

from ciagan.module import CiaganModule

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ("eager", "channels_last", "bf16", "compile")


class SyntheticBatches(Dataset):
    """Random CIAGAN training items with a realistic face mask share (~35%)."""

    def __init__(self, size: int, count: int, num_identities: int) -> None:
        self.size, self.count, self.num_identities = size, count, num_identities

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(index)
        s = self.size
        mask = torch.zeros(1, s, s)
        mask[:, s // 4 : s - s // 8, s // 5 : s - s // 5] = 1
        label = int(torch.randint(self.num_identities, (1,), generator=generator))
        return {
            "image": torch.rand(3, s, s, generator=generator) * 2 - 1,
            "pose": (torch.rand(3, s, s, generator=generator) > 0.97).float(),
            "mask": mask,
            "label": label,
            "pair_image": torch.rand(3, s, s, generator=generator) * 2 - 1,
            "pair_label": label,
            "same": 1.0,
            "target_image": torch.rand(3, s, s, generator=generator) * 2 - 1,
            "target_label": (label + 1) % self.num_identities,
            "index": index,
        }


class IterationTimer(pl.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_train_batch_start(self, *_) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._start = time.perf_counter()

    def on_train_batch_end(self, *_) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self._start)


class ChannelsLast(pl.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        for key, value in batch.items():
            if isinstance(value, torch.Tensor) and value.dim() == 4:
                batch[key] = value.contiguous(memory_format=torch.channels_last)


def module_config() -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=ciagan_celeba"])
    spec = OmegaConf.to_container(cfg.module, resolve=True)
    spec.pop("_target_")
    return spec


def time_setting(setting: str, args: argparse.Namespace) -> tuple[float, float]:
    """(seconds per iteration, seconds spent before the first timed iteration)."""
    torch.manual_seed(0)
    module = CiaganModule(num_identities=1200, image_size=128, **module_config())
    callbacks: list[pl.Callback] = [timer := IterationTimer()]
    if setting == "channels_last":
        module = module.to(memory_format=torch.channels_last)
        callbacks.append(ChannelsLast())
    if setting == "compile":
        for name in ("generator", "discriminator", "identity_net"):
            setattr(module, name, torch.compile(getattr(module, name)))
    precision = "bf16-mixed" if setting == "bf16" else "32-true"
    count = args.iterations + 1
    data = DataLoader(SyntheticBatches(128, count * args.batch, 1200), batch_size=args.batch)
    trainer = pl.Trainer(
        accelerator="gpu" if args.device == "cuda" else "cpu",
        devices=1,
        max_steps=3 * count,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=data)
    total = time.perf_counter() - start
    timed = timer.times[1:]
    per_iteration = sum(timed) / len(timed)
    return per_iteration, total - sum(timed)


def preprocess_rate(workers: int) -> float:
    from deid.datasets import demo
    from deid.prep.faces import preprocess

    root = demo.require(demo.DEFAULT_ROOT)
    with tempfile.TemporaryDirectory() as out:
        cfg = OmegaConf.create(
            {
                "data": {"name": "demo", "root": str(root), "split": "all"},
                "out": out,
                "detector": {"name": "dlib_hog", "upsample": 1},
                "workers": workers,
                "limit": None,
                "save_maps": False,
                "crop": {"size": [178, 218], "scale": 5.0},
            }
        )
        summary = preprocess(cfg)
    return summary["done"] / summary["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations per setting")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--skip-preprocess", action="store_true")
    args = parser.parse_args()

    print(
        f"# CIAGAN training, 128 px, batch {args.batch}, 1,200 identities; "
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {args.device}"
    )
    print("| setting | s / iteration | images / s | vs eager | setup + warm-up s |")
    print("|---|---|---|---|---|")
    baseline = None
    for setting in args.settings.split(","):
        try:
            seconds, setup = time_setting(setting, args)
        except Exception as err:  # a setting this machine cannot run (e.g. no compiler)
            print(f"| {setting} | failed: {type(err).__name__}: {str(err)[:80]} | | | |")
            continue
        baseline = baseline or seconds
        print(
            f"| {setting} | {seconds:.2f} | {args.batch / seconds:.2f} | "
            f"{baseline / seconds:.2f}x | {setup:.1f} |",
            flush=True,
        )
    if args.skip_preprocess:
        return
    print("\n# preprocessing, demo set (118 photos): dlib HOG + 68 landmarks + crops")
    print("| workers | images / s | vs 1 worker |")
    print("|---|---|---|")
    one = preprocess_rate(1)
    print(f"| 1 | {one:.1f} | 1.00x |", flush=True)
    two = preprocess_rate(2)
    print(f"| 2 | {two:.1f} | {two / one:.2f}x |")


if __name__ == "__main__":
    main()
