"""The ffmpeg binary (imageio-ffmpeg's, or PATH's): stream inspection and audio muxing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path


def find_ffmpeg() -> str | None:
    """The ffmpeg binary: imageio-ffmpeg's bundled one (or `$IMAGEIO_FFMPEG_EXE`), else PATH's."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return shutil.which("ffmpeg")


def probe_streams(path: str | os.PathLike[str], ffmpeg: str | None = None) -> list[str]:
    """Stream descriptions from `ffmpeg -i path`, e.g. ["Video: mpeg4 ...", "Audio: aac ..."].

    Needs an ffmpeg binary (ffprobe is not shipped by imageio-ffmpeg); raises RuntimeError
    without one.
    """
    ffmpeg = ffmpeg or find_ffmpeg()
    if ffmpeg is None:
        raise RuntimeError("no ffmpeg binary found (pip install imageio-ffmpeg)")
    # `ffmpeg -i` with no output exits 1 by design; the stream list is on stderr.
    proc = subprocess.run(
        [ffmpeg, "-hide_banner", "-nostdin", "-i", os.fspath(path)],
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )
    return re.findall(r"^\s*Stream #\d+:\d+\S*: (.+)$", proc.stderr, flags=re.MULTILINE)


def has_audio(path: str | os.PathLike[str], ffmpeg: str | None = None) -> bool:
    return any(stream.startswith("Audio:") for stream in probe_streams(path, ffmpeg))


def mux_audio(ffmpeg: str, video: Path, audio_from: Path, out: Path, duration: float) -> str | None:
    """Write `video`'s video stream plus `audio_from`'s first audio track to `out`.

    The video is copied bit for bit; the audio is copied too, or, when `out`'s container cannot
    hold its codec, re-encoded with the container's default (aac for mp4/mov, mp3 for avi).
    The audio is cut to `duration` seconds; metadata (GPS tags etc.) is dropped.
    Returns None on success, else ffmpeg's last error line.
    """
    command = [ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-y", "-i", os.fspath(video)]
    command += ["-t", f"{duration:.6f}", "-i", os.fspath(audio_from)]
    command += ["-map", "0:v:0", "-map", "1:a:0", "-map_metadata", "-1", "-c:v", "copy"]
    error = "no attempt"
    for audio_codec in (["-c:a", "copy"], []):
        proc = subprocess.run(
            [*command, *audio_codec, os.fspath(out)],
            capture_output=True,
            text=True,
            errors="replace",
            check=False,
        )
        if proc.returncode == 0:
            return None
        lines = proc.stderr.strip().splitlines()
        error = lines[-1] if lines else f"ffmpeg exit code {proc.returncode}"
    return error
