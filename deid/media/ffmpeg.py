"""The ffmpeg binary (imageio-ffmpeg's, or PATH's): stream inspection and audio muxing."""

from __future__ import annotations

import contextlib
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


def video_codec(path: str | os.PathLike[str], ffmpeg: str | None = None) -> str | None:
    """The first video stream's codec name (`h264`, `mpeg4`, `hevc`...), None when unknown."""
    try:
        streams = probe_streams(path, ffmpeg)
    except RuntimeError:
        return None
    for stream in streams:
        if stream.startswith("Video:"):
            return stream.split()[1].rstrip(",")
    return None


class H264Pipe:
    """RGB frames piped into an ffmpeg child process that encodes them with libx264.

    yuv420p, BT.601 limited range (what OpenCV's decoder assumes when it reads the file back, so
    untouched pixels survive a decode/encode round trip within ~1.3 grey levels at crf 18) and
    tagged as such. `maxrate` (bits/s) caps the bitrate, e.g. at a multiple of the source's, so
    the output does not grow much beyond it. ffmpeg encodes in its own process, in parallel with
    the Python code that produces the frames.
    """

    def __init__(
        self,
        ffmpeg: str,
        path: Path,
        fps: float,
        size: tuple[int, int],
        crf: int = 18,
        preset: str = "veryfast",
        maxrate: float | None = None,
    ) -> None:
        width, height = size
        command = [ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-y"]
        command += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}"]
        command += ["-r", f"{fps:.6f}", "-i", "-", "-an", "-c:v", "libx264"]
        command += ["-preset", preset, "-crf", str(int(crf)), "-pix_fmt", "yuv420p"]
        command += ["-colorspace", "smpte170m", "-color_primaries", "smpte170m"]
        command += ["-color_trc", "smpte170m", "-color_range", "tv"]
        if maxrate:
            command += ["-maxrate", f"{int(maxrate)}", "-bufsize", f"{int(2 * maxrate)}"]
        command += ["-movflags", "+faststart", "-f", _muxer(path), os.fspath(path)]
        self._proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def write(self, rgb: bytes | memoryview) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(rgb)
        except BrokenPipeError:
            raise RuntimeError(f"ffmpeg stopped encoding: {self._error()}") from None

    def _error(self) -> str:
        self._proc.wait()
        assert self._proc.stderr is not None
        lines = self._proc.stderr.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exit code {self._proc.returncode}"

    def close(self) -> None:
        """Finish the file; raises RuntimeError when ffmpeg failed."""
        assert self._proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self._proc.stdin.close()
        if self._proc.wait() != 0:
            raise RuntimeError(f"ffmpeg failed to encode: {self._error()}")

    def kill(self) -> None:
        self._proc.kill()
        self._proc.wait()


def _muxer(path: Path) -> str:
    ext = path.suffix.lower()
    return {".mkv": "matroska", ".avi": "avi", ".mov": "mov"}.get(ext, "mp4")
