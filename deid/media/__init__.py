"""Image and video reading/writing, atomic outputs, and media discovery for the CLIs.

from deid.media import read_image, write_image, atomic_write, VideoReader, VideoWriter
"""

from deid.media.atomic import AtomicPath, atomic_path, atomic_write
from deid.media.ffmpeg import find_ffmpeg, has_audio, mux_audio, probe_streams
from deid.media.files import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    MediaFile,
    is_image,
    is_video,
    iter_media,
    media_kind,
)
from deid.media.images import IMAGE_WRITE_FORMATS, read_image, write_image, write_png_fast
from deid.media.video import VIDEO_WRITE_CODECS, VideoReader, VideoWriter

__all__ = [
    "IMAGE_EXTENSIONS",
    "IMAGE_WRITE_FORMATS",
    "VIDEO_EXTENSIONS",
    "VIDEO_WRITE_CODECS",
    "AtomicPath",
    "MediaFile",
    "VideoReader",
    "VideoWriter",
    "atomic_path",
    "atomic_write",
    "find_ffmpeg",
    "has_audio",
    "is_image",
    "is_video",
    "iter_media",
    "media_kind",
    "mux_audio",
    "probe_streams",
    "read_image",
    "write_image",
    "write_png_fast",
]
