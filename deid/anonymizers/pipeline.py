"""Everything one input file needs, built once per run; and the image path (videos: `video.py`).

An image: read -> faces (+ landmarks, + person mask) -> identities (track = face index) ->
`FrameAnonymizer` -> written atomically in its own format -> optional audit of the written file.
Pixels outside the regions the method or fallback replaced are written bit-identical; a lossy
format (JPEG, WebP) re-encodes the whole image anyway, so there "identical" means only as
identical as a JPEG re-save at `jpeg_quality` can be. Metadata (EXIF, GPS) is not copied.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field

from deid.anonymizers.audit import Auditor
from deid.anonymizers.frame import FrameAnonymizer
from deid.anonymizers.identity_keys import IdentityAssigner
from deid.anonymizers.inputs import Job
from deid.anonymizers.perception import Perception
from deid.anonymizers.summary import FileRecord
from deid.media import read_image, write_image


@dataclass
class IdentityPolicy:
    """Who gets which fake identity: `fixed` for everyone, else a keyed hash per camera + track.

    `num_identities` None: the method has no identity control, nothing is assigned.
    `camera` None: each file is its own camera session, named by its relative output path.
    """

    key: bytes
    num_identities: int | None
    fixed: int | None = None
    camera: str | None = None

    def assigner(self, rel: str) -> IdentityAssigner | None:
        if self.num_identities is None:
            return None
        camera = self.camera if self.camera is not None else rel
        return IdentityAssigner(self.key, camera, self.num_identities, self.fixed)


@dataclass
class VideoSettings:
    """Tracking, smoothing and gap filling (see `deid.anonymizers.tracking.track_video`)."""

    max_gap: int = 5
    window: int = 5
    polyorder: int = 2
    iou_threshold: float = 0.3
    audio: bool = True  # copy the source's audio track when it has one and ffmpeg exists


@dataclass
class Pipeline:
    perception: Perception
    frames: FrameAnonymizer
    identities: IdentityPolicy
    auditor: Auditor | None = None
    video: VideoSettings = field(default_factory=VideoSettings)
    seed: int = 0
    jpeg_quality: int = 95
    progress: bool = True

    def frame_seed(self, rel: str, frame: int = 0) -> int:
        """A stable per-file, per-frame seed for methods with other randomness."""
        return (self.seed * 1_000_003 + zlib.crc32(rel.encode()) + frame) % 2**31


def new_record(job: Job) -> FileRecord:
    note = (
        f"written as {job.dst.suffix} (cannot write {job.src.suffix})" if job.ext_changed else None
    )
    return FileRecord(input=str(job.src), output=str(job.dst), kind=job.kind, note=note)


def process_image(pipeline: Pipeline, job: Job, record: FileRecord) -> None:
    """Anonymize one image file into `job.dst`; fills `record`. Raises on an unreadable input."""
    start = time.perf_counter()
    image = read_image(job.src)
    faces = pipeline.perception.faces(image)
    mask = pipeline.perception.person_mask(image)
    assigner = pipeline.identities.assigner(job.rel)
    ids = None if assigner is None else [assigner.identity(i) for i in range(len(faces))]
    result = pipeline.frames(image, faces, ids, mask, seed=pipeline.frame_seed(job.rel))
    write_image(job.dst, result.image, quality=pipeline.jpeg_quality)
    record.frames = 1
    record.faces_found = len(faces)
    record.anonymized = result.anonymized
    record.add_fallbacks(result.fallbacks)
    if ids is not None:
        record.identities = {str(i): v for i, v in enumerate(ids)}
    if pipeline.auditor is not None:
        report = pipeline.auditor.audit_image(image, faces, job.dst)
        record.audit_checked, record.audit_flagged = report.checked, report.flagged
    record.seconds = round(time.perf_counter() - start, 3)
