"""Anonymizing a video, end to end, against deface: frames/s side by side in one run.

    .venv/bin/python experiments/benchmarks/anonymize.py [--frames 250] [--repeats 2]
        [--ckpt RUN/checkpoints/last.ckpt] [--deface PATH/TO/deface]

The clip: the demo's moving-faces scene (three real demo photos drifting and breathing in scale
over a grey stage), 640x480, 25 fps, H.264, `--frames` frames. Each tool runs as a user would
run it, as a command (start-up included), alternating tool by tool `--repeats` times; the table
gives the median wall time, frames/s and the ratio to deface:
  deface 1.5.0 (CenterFace ONNX, blur, its defaults), installed into a throwaway venv under
  `.bench/` on first use (pinned; needs PyPI) unless `--deface` names an executable;
  `deid anonymize` with the defaults (blur, mediapipe+mtcnn);
  `deid anonymize --anonymizer ciagan` (the `--ckpt` given, else the ciagan_demo architecture
  with random weights: speed does not depend on the weights).
Coverage: each of ours runs once more with `--audit` (untimed): every face the independent
audit detector finds in the original frames must lie in an anonymized region.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / ".bench" / "anonymize"
DEFACE_VERSION = "1.5.0"


def make_clip(frames: int, path: Path) -> Path:
    """The moving-faces clip as H.264 (what a phone or camera would give)."""
    if path.is_file():
        return path
    from deid.datasets import demo as demo_set
    from deid.media import find_ffmpeg
    from demo.scenes import moving_faces_frames

    images = moving_faces_frames(demo_set.require(demo_set.DEFAULT_ROOT), frames=frames)
    ffmpeg = find_ffmpeg()
    assert ffmpeg is not None, "needs imageio-ffmpeg"
    path.parent.mkdir(parents=True, exist_ok=True)
    command = [ffmpeg, "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24"]
    command += ["-s", "640x480", "-r", "25", "-i", "-", "-c:v", "libx264", "-crf", "20"]
    command += ["-pix_fmt", "yuv420p", str(path)]
    proc = subprocess.Popen(command, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    for image in images:
        proc.stdin.write(image.tobytes())
    proc.stdin.close()
    if proc.wait() != 0:
        raise SystemExit("ffmpeg could not write the clip")
    return path


def deface_executable(given: str | None) -> Path:
    if given:
        return Path(given)
    venv = ROOT / ".bench" / f"deface-{DEFACE_VERSION}"
    exe = venv / "bin" / "deface"
    if not exe.is_file():
        print(f"installing deface=={DEFACE_VERSION} into {venv} (once)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, f"deface=={DEFACE_VERSION}"], check=True)
    return exe


def random_ciagan_checkpoint(path: Path) -> Path:
    """The ciagan_demo architecture with random weights, in the trained checkpoint layout."""
    if path.is_file():
        return path
    import torch
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from ciagan.nets import Generator

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=ciagan_demo"])
    options = OmegaConf.to_container(cfg.module.generator, resolve=True)
    size = int(cfg.datamodule.image_size)
    generator = Generator(5, image_size=size, **options)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {f"generator.{k}": v for k, v in generator.state_dict().items()}
    hparams = {"num_identities": 5, "image_size": size, "generator": options}
    torch.save({"state_dict": state, "hyper_parameters": hparams}, path)
    return path


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{proc.stderr[-3000:]}")
    return seconds


def audit(command: list[str], out: Path, env: dict[str, str]) -> dict[str, int]:
    subprocess.run(
        [*command, "--audit", "--overwrite"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    counts = json.loads(out.with_name(f"{out.stem}.anonymize_summary.json").read_text())["counts"]
    return {
        k: counts[k]
        for k in ("audit_found", "audit_covered", "audit_missed", "audit_still_matching")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--ckpt", type=Path, default=None)
    parser.add_argument("--deface", default=None, help="a deface executable (default: install)")
    args = parser.parse_args()

    clip = make_clip(args.frames, BENCH / f"clip_{args.frames}.mp4")
    deface = deface_executable(args.deface)
    ckpt = args.ckpt or random_ciagan_checkpoint(BENCH / "ciagan_demo_random.ckpt")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    deid = [sys.executable, "-m", "deid.cli", "anonymize", str(clip), "--no-progress"]
    tools = {
        f"deface {DEFACE_VERSION}": [str(deface), str(clip), "-o", str(BENCH / "deface.mp4")],
        "deid anonymize (defaults: blur, mediapipe+mtcnn)": [
            *deid,
            "-o",
            str(BENCH / "deid_blur.mp4"),
            "--overwrite",
        ],
        "deid anonymize --anonymizer ciagan": [
            *deid,
            "-o",
            str(BENCH / "deid_ciagan.mp4"),
            "--overwrite",
            "--anonymizer",
            "ciagan",
            "--ckpt",
            str(ckpt),
        ],
    }
    times: dict[str, list[float]] = {name: [] for name in tools}
    for _ in range(args.repeats):
        for name, command in tools.items():
            times[name].append(timed(command, env))
    coverage = {
        name: audit(command, Path(command[command.index("-o") + 1]), env)
        for name, command in tools.items()
        if name.startswith("deid")
    }
    base = statistics.median(times[f"deface {DEFACE_VERSION}"])
    print(
        f"# {args.frames} frames 640x480 25 fps H.264, 3 moving faces; "
        f"{platform.machine()}, {os.cpu_count()} cores; median of {args.repeats} alternating runs"
    )
    print(
        "| tool | wall s (median) | every run, s | frames / s | vs deface | "
        "vs deface, per round (min-max) | audit: found / covered / missed / matching |"
    )
    print("|---|---|---|---|---|---|---|")
    deface_runs = times[f"deface {DEFACE_VERSION}"]
    for name in tools:
        wall = statistics.median(times[name])
        audit_text = "-"
        if name in coverage:
            c = coverage[name]
            audit_text = (
                f"{c['audit_found']} / {c['audit_covered']} / {c['audit_missed']} / "
                f"{c['audit_still_matching']}"
            )
        # each round runs every tool once, back to back: its ratio sees the same machine state
        rounds = [d / t for d, t in zip(deface_runs, times[name], strict=True)]
        runs = ", ".join(f"{t:.1f}" for t in times[name])
        print(
            f"| {name} | {wall:.1f} | {runs} | {args.frames / wall:.1f} | {base / wall:.2f}x | "
            f"{min(rounds):.2f}-{max(rounds):.2f}x | {audit_text} |"
        )


if __name__ == "__main__":
    main()
