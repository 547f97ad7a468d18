"""VQGAN sampler speed: the per-token reference (taming's procedure) vs the fast KV-cached one.

    .venv/bin/python experiments/benchmarks/vqgan_sample.py [--device cpu|cuda]
        [--ref-tokens 3] [--shapes 16x16,32x16] [--batch 4] [--dtype fp32|bf16] [--small]

The COCO-Stuff transformer's size (32 layers, width 1280, 16 heads, block 512, vocabulary
8192; 651M parameters) with random weights (speed does not depend on them), random
condition tokens, top-k 100, temperature 1. A 256x256 person is a 16x16 latent grid, a
512x256 (tall) one 32 rows x 16 columns.

The reference does one full 511-token forward per token (~20 minutes per 256x256 person on
2 CPU cores), so it is timed over `--ref-tokens` tokens and extrapolated to the whole grid:
every one of its steps costs the same forward, so the extrapolation is linear (one
untimed warm-up token first: the first forward of a process is slower). The fast
sampler is timed over the whole grid, for one person, and for `--batch` persons sampled
together (same grid size; one seed each) on the first shape. The tokens the reference drew are compared with the
fast sampler's first tokens (same seed): they must be identical. The largest logit
difference between cached and full forwards is measured on one window, against the fast
sampler's certification tolerance.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from vqgan.nets import GPT, GPTConfig
from vqgan.sampling import FP32_TOLERANCE, SampleStats, sample_fast, sample_reference

COND_CODES = 1024  # the segmentation stage's codebook


def parse_shapes(text: str) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in item.split("x")) for item in text.split(",")]  # type: ignore[misc]


@torch.inference_mode()
def logit_error(model: GPT, device: str) -> tuple[float, float]:
    """(max |cached - full| logits, max |logit|) over 8 positions of one full window."""
    generator = torch.Generator().manual_seed(0)
    seq = torch.randint(
        0, model.config.vocab_size, (1, model.block_size - 1), generator=generator
    ).to(device)
    n_cond = (model.block_size) // 2
    full = model(seq)[0].float()
    cache = model.new_cache(1, model.block_size)
    logits, _ = model.forward_with_cache(seq[:, :n_cond], cache, last_only=True)
    errors = [float((logits[0, -1].float() - full[n_cond - 1]).abs().max())]
    for t in range(n_cond, n_cond + 7):
        logits, _ = model.forward_with_cache(seq[:, t : t + 1], cache)
        errors.append(float((logits[0, -1].float() - full[t]).abs().max()))
    return max(errors), float(full.abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument(
        "--ref-tokens", type=int, default=3, help="tokens the reference is timed on"
    )
    parser.add_argument("--shapes", default="16x16,32x16", help="latent grids, rows x columns")
    parser.add_argument(
        "--batch",
        type=int,
        default=4,
        help="also time this many persons sampled together (first shape)",
    )
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--small", action="store_true", help="a 2-layer model, to smoke-test")
    args = parser.parse_args()

    config = GPTConfig(n_layer=2, n_embd=256) if args.small else GPTConfig()
    torch.manual_seed(0)
    model = GPT(config).to(args.device).eval()
    params = sum(p.numel() for p in model.parameters())
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    print(f"transformer: {params:,} parameters ({config.n_layer} layers, width {config.n_embd})")
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {args.device}, fast dtype {args.dtype}"
    )

    error, scale = logit_error(model, args.device)
    print(
        f"cached vs full forward: max |logit difference| {error:.2e} at max |logit| {scale:.2f} "
        f"(certification tolerance {FP32_TOLERANCE * max(1.0, scale):.2e})"
    )

    rows = []
    for k, (height, width) in enumerate(parse_shapes(args.shapes)):
        generator = torch.Generator().manual_seed(1)
        cond = torch.randint(
            0, COND_CODES, (max(args.batch, 1), height, width), generator=generator
        )
        cond = cond.to(args.device)
        n = height * width
        sample_reference(model, cond[:1], seeds=[0], max_tokens=1)  # warm-up, not timed
        start = time.perf_counter()
        reference = sample_reference(model, cond[:1], seeds=[0], max_tokens=args.ref_tokens)
        ref_rate = args.ref_tokens / (time.perf_counter() - start)
        # one person per shape; the first shape also with a batch of persons sampled together
        for batch in [1] + ([args.batch] if k == 0 and args.batch > 1 else []):
            stats = SampleStats()
            start = time.perf_counter()
            fast = sample_fast(
                model, cond[:batch], seeds=list(range(batch)), dtype=dtype, stats=stats
            )
            seconds = time.perf_counter() - start
            same = torch.equal(
                reference.flatten()[: args.ref_tokens], fast[0].flatten()[: args.ref_tokens]
            )
            rate = batch * n / seconds
            name = f"{height * 16}x{width * 16} ({height}x{width}), batch {batch}"
            rows.append(
                (name, ref_rate, n / ref_rate, rate, seconds / batch, rate / ref_rate, same, stats)
            )

    print()
    print(
        "| person (latents), fast batch | reference tok/s | reference s/person (extrapolated) "
        "| fast tok/s | fast s/person | speed-up | identical first tokens | recomputed / rebuilds |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, rr, rs, fr, fs, ratio, same, st in rows:
        print(
            f"| {name} | {rr:.3f} | {rs:,.0f} | {fr:.2f} | {fs:,.1f} | {ratio:.1f}x | "
            f"{'yes' if same else 'NO'} ({args.ref_tokens}) | {st.recomputed} / {st.rebuilds} |"
        )


if __name__ == "__main__":
    main()
