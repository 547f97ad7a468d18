"""Everything one input file needs, built once per run; and the image path (videos: `video.py`).

An image: read -> faces (+ landmarks, + person mask) -> identities (one per person of the camera
session, see `linking.py`) -> `FrameAnonymizer` -> written atomically in its own format ->
optional audit of the written file. Pixels outside the regions the method or fallback replaced
are written bit-identical; a lossy format (JPEG, WebP) re-encodes the whole image anyway, so
there "identical" means only as identical as a JPEG re-save at `jpeg_quality` can be.
Metadata (EXIF, GPS) is not copied.
"""

from __future__ import annotations

import os
import posixpath
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from deid.anonymizers.audit import Auditor, AuditReport
from deid.anonymizers.frame import FrameAnonymizer, FrameResult
from deid.anonymizers.identity_keys import IdentityAssigner
from deid.anonymizers.inputs import Job
from deid.anonymizers.linking import PhotoLinker
from deid.anonymizers.perception import Perception
from deid.anonymizers.settings import AnonymizeSettings
from deid.anonymizers.summary import FileRecord
from deid.faces.types import Face
from deid.media import read_image, write_image


@dataclass
class IdentityPolicy:
    """Who gets which fake identity: `fixed` for everyone, else a keyed hash per camera + person.

    `num_identities` None: the method has no identity control, nothing is assigned.
    `camera` None: each video is its own camera session (its relative path), and so is each
    photo folder when photos are linked (`link_photos`), else each photo.
    """

    key: bytes
    num_identities: int | None
    fixed: int | None = None
    camera: str | None = None
    link_photos: bool = True

    def camera_of(self, job: Job) -> str:
        if self.camera is not None:
            return self.camera
        if job.kind == "image" and self.link_photos:
            return posixpath.dirname(job.rel) or "."
        return job.rel

    def assigner(self, job: Job) -> IdentityAssigner | None:
        return self.assigner_for(self.camera_of(job))

    def assigner_for(self, camera: str) -> IdentityAssigner | None:
        if self.num_identities is None:
            return None
        return IdentityAssigner(self.key, camera, self.num_identities, self.fixed)


@dataclass
class Pipeline:
    settings: AnonymizeSettings
    perception: Perception
    frames: FrameAnonymizer
    identities: IdentityPolicy
    # builds another perception for a detection thread; None: detect on the main thread only
    make_perception: Callable[[], Perception] | None = None
    auditor: Auditor | None = None
    linker: PhotoLinker | None = None
    _local: threading.local = field(default_factory=threading.local, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _lent_main: bool = field(default=False, repr=False)
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)

    @property
    def progress(self) -> bool:
        return self.settings.progress

    @property
    def workers(self) -> int:
        """Frame worker threads: the setting, 0 = one per core; 1 without a perception factory
        (an injected detector exists once)."""
        if self.make_perception is None:
            return 1
        requested = self.settings.workers
        return requested if requested > 0 else max(1, os.cpu_count() or 1)

    def pool(self) -> ThreadPoolExecutor:
        """The run's frame worker threads, started once: each keeps its perception models for
        every pass and every video (building a MediaPipe graph costs ~0.25 s)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, "deid-frames")
        return self._pool

    def thread_perception(self) -> Perception:
        """This thread's own perception models (detectors are not thread-safe). The first
        worker thread takes over the main perception, which the main thread leaves alone while
        workers run (it writes frames), so a run builds one perception per worker, not one more."""
        if self.make_perception is None or threading.current_thread() is threading.main_thread():
            return self.perception
        if not hasattr(self._local, "perception"):
            with self._lock:
                lend, self._lent_main = not self._lent_main, True
            self._local.perception = self.perception if lend else self.make_perception()
        return self._local.perception

    def close(self) -> None:
        """Stop the worker threads (their perceptions go with them)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def frame_seed(self, rel: str, frame: int = 0) -> int:
        """A stable per-file, per-frame seed for methods with other randomness."""
        return (self.settings.seed * 1_000_003 + zlib.crc32(rel.encode()) + frame) % 2**31

    def photo_identities(self, job: Job, image: np.ndarray, faces: list[Face]) -> list[int] | None:
        """One fake identity per face of a photo: per person of the camera session."""
        return self.identities_for(self.identities.camera_of(job), image, faces)

    def identities_for(self, camera: str, image: np.ndarray, faces: list[Face]) -> list[int] | None:
        """One fake identity per face of a photo of session `camera` (None: no control)."""
        assigner = self.identities.assigner_for(camera)
        if assigner is None:
            return None
        if self.linker is None or assigner.fixed is not None:
            return [assigner.identity(i) for i in range(len(faces))]
        persons = self.linker.persons(assigner.camera, image, faces)
        return [assigner.identity(person) for person in persons]

    def audit(
        self, original: np.ndarray, output: np.ndarray, result: FrameResult, frame: int | None
    ) -> AuditReport:
        assert self.auditor is not None
        return self.auditor.frame(original, output, result.regions, result.mask, frame)


def new_record(job: Job) -> FileRecord:
    note = (
        f"written as {job.dst.suffix} (cannot write {job.src.suffix})" if job.ext_changed else None
    )
    stat = job.src.stat()
    return FileRecord(
        input=str(job.src),
        output=str(job.dst),
        kind=job.kind,
        note=note,
        input_size=stat.st_size,
        input_mtime=stat.st_mtime,
    )


def process_image(pipeline: Pipeline, job: Job, record: FileRecord) -> None:
    """Anonymize one image file into `job.dst`; fills `record`. Raises on an unreadable input."""
    start = time.perf_counter()
    image = read_image(job.src)
    faces = pipeline.perception.faces(image)
    mask = pipeline.perception.person_mask(image)
    ids = pipeline.photo_identities(job, image, faces)
    result = pipeline.frames(image, faces, ids, mask, seed=pipeline.frame_seed(job.rel))
    write_image(job.dst, result.image, quality=pipeline.settings.jpeg_quality)
    record.frames = 1
    record.faces_found = len(faces)
    record.anonymized = result.anonymized
    record.add_fallbacks(result.fallbacks)
    record.add_fallbacks(result.method_fallbacks, method=True)
    if ids is not None:
        record.identities = {str(i): v for i, v in enumerate(ids)}
    if pipeline.auditor is not None:
        record.audit = pipeline.audit(image, read_image(job.dst), result, None)
    record.seconds = round(time.perf_counter() - start, 3)
