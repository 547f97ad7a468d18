"""VQGAN training speed: first-stage images/s and transformer tokens/s, with FLOPs per step.

    .venv/bin/python experiments/benchmarks/vqgan_train.py [--device cpu|cuda]
        [--settings eager,bf16,bf16_channels_last,compile] [--steps 2] [--full] [--match TEXT]

First stage (`VQGANModule`, one training step as `training_step` runs it: autoencoder step,
then discriminator step): taming's f=16 network (ch 128, ch_mult [1,1,2,2,4], 8192 codes,
74M parameters) at 256 px, and the demo network (`vqgan_demo_first`, 3.4M) at 64 px; each
without the discriminator and perceptual term, and with both (the discriminator active, the
adaptive weight computed; LPIPS-VGG with random weights: the same FLOPs as the real one).
Transformer (`CondTransformerModule.token_loss` + AdamW step): the demo transformer (2 x 128,
127 tokens, batch 32) and a 12-layer, 768-wide one on 511 tokens by default; `--full` adds taming's
COCO size (32 x 1280, 651M parameters; about 10 GB with AdamW). Frozen-stage encoding is not
included (tokens are given).

Per step: FLOPs counted once with `torch.utils.flop_counter.FlopCounterMode` (forward +
backward, eager), seconds averaged over `--steps` steps after one untimed warm-up step, and the
achieved rate = FLOPs / seconds. Settings: eager fp32, bf16 autocast, bf16 + channels_last,
torch.compile (opt-in: minutes of compiling on a CPU). The default run takes about 4 minutes
on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from vqgan.autoencoder_module import VQGANModule
from vqgan.nets import GPT, GPTConfig, count_parameters
from vqgan.perceptual import LPIPSVGG
from vqgan.transformer_module import param_groups

DEFAULT_SETTINGS = ("eager", "bf16", "bf16_channels_last")
TAMING_F16 = {
    "ch": 128,
    "ch_mult": [1, 1, 2, 2, 4],
    "num_res_blocks": 2,
    "attn_resolutions": [16],
    "z_channels": 256,
    "embed_dim": 256,
    "n_embed": 8192,
}
DEMO = {
    "ch": 32,
    "ch_mult": [1, 2, 2, 4],
    "num_res_blocks": 1,
    "attn_resolutions": [8],
    "z_channels": 64,
    "embed_dim": 64,
    "n_embed": 256,
}


@dataclass
class Case:
    name: str
    unit: str  # what the rate counts: images or tokens
    per_step: int  # units per step
    build: Callable[[str], tuple[torch.nn.Module, Callable[[], None]]]  # setting -> step fn


def first_stage_case(name: str, vq: dict, size: int, batch: int, full_loss: bool, device: str):
    def build(setting: str):
        torch.manual_seed(0)
        loss = {"perceptual": "none", "disc_start": 0 if full_loss else 10**9}
        module = VQGANModule(
            image_size=size,
            batch_size=batch,
            vq=vq,
            discriminator={"ndf": 64, "n_layers": 3} if size >= 256 else {"ndf": 32, "n_layers": 2},
            loss=loss,
            optimizer={"lr": 1e-4, "scale_lr": False},
        ).to(device)
        if full_loss:
            module._perceptual = [LPIPSVGG().to(device)]  # random weights: timing only
            module.loss_config["perceptual"] = "lpips_vgg"
        x = torch.rand(batch, 3, size, size, device=device) * 2 - 1
        if "channels_last" in setting:
            module = module.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        if setting == "compile":
            module.autoencoder = torch.compile(module.autoencoder)
            module.discriminator = torch.compile(module.discriminator)
        opt_ae, opt_d = module.configure_optimizers()

        def step() -> None:
            with autocast(setting, device):
                xrec, quantized, _ = module.reconstruct(x)
                loss, _ = module.generator_loss(x, xrec, quantized)
            opt_ae.zero_grad(set_to_none=True)
            loss.backward()
            opt_ae.step()
            if module.discriminator_active():
                with autocast(setting, device):
                    d_loss, _ = module.discriminator_loss(x, xrec)
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()

        return module, step

    return Case(name, "images", batch, build)


def transformer_case(name: str, config: GPTConfig, batch: int, device: str):
    tokens = config.block_size - 1

    def build(setting: str):
        torch.manual_seed(0)
        gpt = GPT(config).to(device)
        if setting == "compile":
            gpt = torch.compile(gpt)
        opt = torch.optim.AdamW(param_groups(gpt, 0.01), lr=1e-4, betas=(0.9, 0.95))
        seq = torch.randint(config.vocab_size, (batch, tokens + 1), device=device)
        half = (tokens + 1) // 2

        def step() -> None:
            with autocast(setting, device):
                logits = gpt(seq[:, :-1])
                loss = torch.nn.functional.cross_entropy(
                    logits[:, half - 1 :].reshape(-1, config.vocab_size).float(),
                    seq[:, half:].reshape(-1),
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return gpt, step

    return Case(name, "tokens", batch * tokens, build)


def autocast(setting: str, device: str):
    if "bf16" in setting:
        return torch.autocast(device_type=device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def run(case: Case, setting: str, steps: int, device: str) -> tuple[float, float, int]:
    """(seconds per step, FLOPs per step, parameters)."""
    module, step = case.build(setting)
    step()  # warm-up (and compilation)
    flops = 0.0
    if setting != "compile":
        counter = FlopCounterMode(display=False)
        with counter:
            step()
        flops = float(counter.get_total_flops())
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return (time.perf_counter() - start) / steps, flops, count_parameters(module)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--settings", default=",".join(DEFAULT_SETTINGS))
    parser.add_argument("--steps", type=int, default=2, help="timed steps per case and setting")
    parser.add_argument("--full", action="store_true", help="add taming's COCO transformer")
    parser.add_argument("--match", default="", help="only the cases whose name contains this")
    args = parser.parse_args()
    device = args.device
    gpu = device == "cuda"
    cases = [
        first_stage_case("first stage 256 px (taming f16), AE only", TAMING_F16, 256, 4 if gpu else 1, False, device),
        first_stage_case("first stage 256 px (taming f16), + D + LPIPS", TAMING_F16, 256, 4 if gpu else 1, True, device),
        first_stage_case("first stage 64 px (demo), AE only", DEMO, 64, 16, False, device),
        first_stage_case("first stage 64 px (demo), + D + LPIPS", DEMO, 64, 16, True, device),
        transformer_case("transformer demo (2 x 128, 127 tokens)", GPTConfig(256, 128, 2, 4, 128), 32, device),
        transformer_case("transformer 12 x 768, 511 tokens", GPTConfig(8192, 512, 12, 12, 768), 8 if gpu else 1, device),
    ]  # fmt: skip
    if args.full:
        coco = GPTConfig(8192, 512, 32, 16, 1280)
        cases.append(
            transformer_case(
                "transformer COCO (32 x 1280, 511 tokens)", coco, 8 if gpu else 1, device
            )
        )
    cases = [case for case in cases if args.match in case.name]
    name = torch.cuda.get_device_name() if gpu else platform.processor() or platform.machine()
    print(
        f"# VQGAN training steps; {name}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {device}"
    )
    print(
        "| case | params | setting | s / step | units / s | vs eager | GFLOP / step | achieved TFLOP/s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for case in cases:
        baseline, flops = None, 0.0
        for setting in args.settings.split(","):
            try:
                seconds, counted, params = run(case, setting, args.steps, device)
            except Exception as err:  # a setting this machine cannot run (e.g. no compiler)
                print(
                    f"| {case.name} | | {setting} | failed: {type(err).__name__}: {str(err)[:60]} |||||"
                )
                continue
            flops = counted or flops  # compile: the eager count (same arithmetic)
            baseline = baseline or seconds
            rate = case.per_step / seconds
            shown = f"{rate:,.0f}" if rate >= 100 else f"{rate:.3g}"
            print(
                f"| {case.name} | {params / 1e6:.1f}M | {setting} | {seconds:.3f} | "
                f"{shown} {case.unit} | {baseline / seconds:.2f}x | {flops / 1e9:,.1f} | "
                f"{flops / seconds / 1e12:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
