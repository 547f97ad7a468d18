"""Video reading and atomic writing with OpenCV; audio carried over with an ffmpeg binary.

Codecs: `codec="h264"` pipes frames to the ffmpeg that imageio-ffmpeg ships (libx264, see
`deid.media.ffmpeg.H264Pipe`): plays everywhere, ~1.3 grey levels from the input and about
its size (the anonymize default for H.264 inputs and .mp4/.m4v/.mov outputs). `codec="opencv"`
uses OpenCV 5's bundled FFmpeg (measured: 25 frames at 12.5 fps read back as exactly 25 frames
at 12.5 fps in every container below):
  .mp4 .m4v .mov -> mp4v (MPEG-4 part 2; plays in VLC/ffmpeg, not in most browsers; measured
                    3.5x the size of an H.264 source and 2.7 grey levels off)
  .avi .mkv      -> MJPG (motion JPEG: bigger files, no inter-frame artefacts)
H.264 (avc1) is not available in OpenCV's wheel. Frames must have even width and height
(yuv420p); OpenCV would silently crop odd sizes, so `VideoWriter` pads them by repeating the
last row/column and warns.
"""

from __future__ import annotations

import os
import warnings
import weakref
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from deid.errors import BadInputError
from deid.media.atomic import AtomicPath
from deid.media.ffmpeg import H264Pipe, find_ffmpeg, has_audio, mux_audio
from deid.media.files import check_input_file

VIDEO_WRITE_CODECS = {
    ".mp4": "mp4v",
    ".m4v": "mp4v",
    ".mov": "mp4v",
    ".avi": "MJPG",
    ".mkv": "MJPG",
}
DEFAULT_FPS = 25.0


class VideoReader:
    """Iterate a video's frames as RGB uint8 (H, W, 3) arrays.

    `fps` and `frame_count` come from the container (`frame_count` is 0 when unknown and can
    be an estimate for some formats; iterating gives the true frames). `size` is (width, height)
    of the decoded frames, rotation metadata applied. Iterating again starts from frame 0.
    A missing, empty, folder or undecodable file raises `BadInputError`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        check_input_file(self.path)
        self._cap, first = self._open()
        self._first: np.ndarray | None = first
        height, width = first.shape[:2]
        self.size: tuple[int, int] = (width, height)
        fps = float(self._cap.get(cv2.CAP_PROP_FPS))
        if not np.isfinite(fps) or fps <= 0:
            warnings.warn(
                f"{self.path}: no frame rate in the file; assuming {DEFAULT_FPS}", stacklevel=2
            )
            fps = DEFAULT_FPS
        self.fps = fps
        count = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(count) if np.isfinite(count) and count > 0 else 0

    def _open(self) -> tuple[cv2.VideoCapture, np.ndarray]:
        cap = cv2.VideoCapture(os.fspath(self.path), cv2.CAP_FFMPEG)
        ok, frame = cap.read() if cap.isOpened() else (False, None)
        if not ok or frame is None:
            cap.release()
            raise BadInputError(
                self.path,
                "not a readable video (unknown format, truncated or corrupt: no frame decodes)",
            )
        return cap, frame

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._cap is None:
            raise ValueError(f"{self.path}: reader is closed")
        if self._first is None:  # a second pass: start again from the beginning
            self._cap.release()
            self._cap, self._first = self._open()
        frame, self._first = self._first, None
        decoded = 0
        while frame is not None:
            decoded += 1
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            ok, frame = self._cap.read()
            if not ok:
                frame = None
        # Containers without a frame index give an estimate from their duration, which an
        # audio track a little longer than the video can push up by a frame: allow for that.
        if self.frame_count and self.frame_count - decoded > max(2, self.frame_count // 100):
            warnings.warn(
                f"{self.path}: decoded {decoded} of the {self.frame_count} frames the file "
                "announces (truncated or corrupt video?)",
                stacklevel=2,
            )

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _cleanup(writer: cv2.VideoWriter | H264Pipe, atomic: AtomicPath) -> None:
    """Finalizer for a writer that was never closed: drop the unfinished temp file."""
    if isinstance(writer, H264Pipe):
        writer.kill()
    else:
        writer.release()
    if not atomic.done:
        atomic.discard()


class VideoWriter:
    """Write RGB uint8 frames to `path` atomically; optionally copy another file's audio.

    Frames go to a hidden temp file beside `path`, renamed onto it by a successful `close()`
    (or the end of a `with` block); an exception inside the block removes the temp file and
    leaves any existing `path` untouched. `size` is (width, height); every frame must match it.

    `audio_from`: a media file whose first audio track is copied (re-encoded only when the
    container cannot hold its codec) into the output, cut to the video's duration. This needs
    an ffmpeg binary (imageio-ffmpeg ships one); without one the video is written silent and a
    warning says so. Metadata of the source (e.g. GPS tags) is not carried over.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: float,
        size: tuple[int, int],
        audio_from: str | os.PathLike[str] | None = None,
        fourcc: str | None = None,
        codec: str = "opencv",
        crf: int = 18,
        preset: str = "veryfast",
        maxrate: float | None = None,
    ) -> None:
        self.path = Path(path)
        ext = self.path.suffix.lower()
        if codec not in ("opencv", "h264"):
            raise ValueError(f"codec must be 'opencv' or 'h264', got {codec!r}")
        if fourcc is None and ext not in VIDEO_WRITE_CODECS:
            known = " ".join(sorted(VIDEO_WRITE_CODECS))
            raise BadInputError(
                self.path, f"cannot write video with extension {ext!r} (use {known})"
            )
        if not (np.isfinite(fps) and fps > 0):
            raise ValueError(f"{self.path}: fps must be a positive number, got {fps}")
        width, height = (int(v) for v in size)
        if width <= 0 or height <= 0:
            raise ValueError(f"{self.path}: size must be positive (width, height), got {size}")
        self.audio_from = Path(audio_from) if audio_from is not None else None
        if self.audio_from is not None:
            check_input_file(self.audio_from)
        self.fps = float(fps)
        self.size = (width, height)
        self._pad = (height % 2, width % 2)
        if any(self._pad):
            warnings.warn(
                f"{self.path}: odd frame size {width}x{height}; padded to "
                f"{width + self._pad[1]}x{height + self._pad[0]} (yuv420p needs even sizes)",
                stacklevel=2,
            )
        self.codec = codec
        self.fourcc = "avc1" if codec == "h264" else fourcc or VIDEO_WRITE_CODECS[ext]
        self.frames_written = 0
        self._atomic = AtomicPath(self.path)
        padded = (width + self._pad[1], height + self._pad[0])
        self._writer: cv2.VideoWriter | H264Pipe
        if codec == "h264":
            ffmpeg = find_ffmpeg()
            if ffmpeg is None:
                self._atomic.discard()
                raise BadInputError(
                    self.path, "H.264 needs an ffmpeg binary (pip install imageio-ffmpeg)"
                )
            self._writer = H264Pipe(
                ffmpeg, self._atomic.tmp, self.fps, padded, crf, preset, maxrate
            )
        else:
            self._writer = cv2.VideoWriter(
                os.fspath(self._atomic.tmp),
                cv2.CAP_FFMPEG,
                cv2.VideoWriter_fourcc(*self.fourcc),
                self.fps,
                padded,
            )
            if not self._writer.isOpened():
                self._atomic.discard()
                raise BadInputError(self.path, f"OpenCV cannot open a {self.fourcc} video writer")
        self._finalizer = weakref.finalize(self, _cleanup, self._writer, self._atomic)
        self._closed = False

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB uint8 frame of shape (height, width, 3)."""
        if self._closed:
            raise ValueError(f"{self.path}: writer is closed")
        width, height = self.size
        if frame.dtype != np.uint8 or frame.shape != (height, width, 3):
            raise ValueError(
                f"{self.path}: expected uint8 frames of shape {(height, width, 3)}, "
                f"got {frame.dtype} {frame.shape}"
            )
        if any(self._pad):
            frame = np.pad(frame, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
        if isinstance(self._writer, H264Pipe):
            self._writer.write(np.ascontiguousarray(frame).data)
        else:
            self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames_written += 1

    def close(self) -> Path:
        """Finish the file and move it into place; returns the path."""
        if self._closed:
            return self.path
        self._closed = True
        self._finalizer.detach()
        if self.frames_written == 0:
            _cleanup(self._writer, self._atomic)
            raise ValueError(f"{self.path}: no frames were written; nothing saved")
        try:
            if isinstance(self._writer, H264Pipe):
                self._writer.close()
            else:
                self._writer.release()
            if self.audio_from is not None:
                self._add_audio()
        except BaseException:
            self._atomic.discard()
            raise
        return self._atomic.commit()

    def abort(self) -> None:
        """Stop writing and remove the unfinished file; an existing target is left intact."""
        if self._closed:
            return
        self._closed = True
        self._finalizer.detach()
        _cleanup(self._writer, self._atomic)

    def _add_audio(self) -> None:
        assert self.audio_from is not None
        ffmpeg = find_ffmpeg()
        if ffmpeg is None:
            warnings.warn(
                f"{self.path}: no ffmpeg binary found, so the audio of {self.audio_from} was not "
                "copied (pip install imageio-ffmpeg); wrote video only",
                stacklevel=3,
            )
            return
        if not has_audio(self.audio_from, ffmpeg):
            warnings.warn(f"{self.audio_from}: has no audio track; wrote video only", stacklevel=3)
            return
        muxed = self._atomic.sibling()
        try:
            error = mux_audio(
                ffmpeg, self._atomic.tmp, self.audio_from, muxed, self.frames_written / self.fps
            )
            if error is None:
                os.replace(muxed, self._atomic.tmp)
                return
        finally:
            muxed.unlink(missing_ok=True)
        warnings.warn(
            f"{self.path}: could not copy the audio of {self.audio_from} ({error}); "
            "wrote video only",
            stacklevel=3,
        )

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
