"""Videos in two passes, so every frame's faces are known before any frame is written.

Pass 1 reads every frame and keeps only its faces (boxes, + 68 landmarks for landmark
methods), never the frames. `track_video` then links faces into tracks, smooths boxes and
landmarks over time (Savitzky-Golay) and fills gaps of up to `max_gap` frames where the detector
missed a tracked face. Pass 2 reads the frames again and anonymizes each with its tracked faces,
gap-filled ones included, each track keeping one fake identity (`IdentityPolicy`), and writes
them with `VideoWriter` at the source's frame rate and frame count (plus its audio when it has
one and an ffmpeg binary is installed). Any error removes the unfinished output (atomic write);
a second pass that decodes a different number of frames than the first is such an error, since
frames beyond the first pass would have no faces to anonymize.

Memory: faces only (a few KB per frame), never frames. Cost: the video is decoded twice.
"""

from __future__ import annotations

import time

from tqdm import tqdm

from deid.anonymizers.inputs import Job
from deid.anonymizers.pipeline import Pipeline
from deid.anonymizers.summary import FileRecord
from deid.anonymizers.tracking import TrackedFace, track_video
from deid.faces.types import Face
from deid.media import VideoReader, VideoWriter, find_ffmpeg, has_audio


def detect_faces(pipeline: Pipeline, reader: VideoReader, label: str) -> list[list[Face]]:
    """Pass 1: the faces of every frame."""
    bar = tqdm(
        reader,
        total=reader.frame_count or None,
        desc=f"{label} [1/2 faces]",
        unit="frame",
        leave=False,
        disable=None if pipeline.progress else True,
    )
    return [pipeline.perception.faces(frame) for frame in bar]


def _audio_source(pipeline: Pipeline, job: Job) -> str | None:
    if not pipeline.video.audio:
        return None
    ffmpeg = find_ffmpeg()
    try:
        return str(job.src) if ffmpeg is not None and has_audio(job.src, ffmpeg) else None
    except (OSError, RuntimeError):
        return None


def process_video(pipeline: Pipeline, job: Job, record: FileRecord) -> list[list[TrackedFace]]:
    """Anonymize one video into `job.dst`; fills `record`; returns the tracked faces per frame."""
    start = time.perf_counter()
    settings = pipeline.video
    with VideoReader(job.src) as reader:
        detections = detect_faces(pipeline, reader, job.rel)
        tracked = track_video(
            detections,
            iou_threshold=settings.iou_threshold,
            max_gap=settings.max_gap,
            window=settings.window,
            polyorder=settings.polyorder,
        )
        assigner = pipeline.identities.assigner(job.rel)
        identities: dict[str, int] = {}
        bar = tqdm(
            reader,
            total=len(tracked),
            desc=f"{job.rel} [2/2 anonymize]",
            unit="frame",
            leave=False,
            disable=None if pipeline.progress else True,
        )
        audio = _audio_source(pipeline, job)
        with VideoWriter(job.dst, reader.fps, reader.size, audio_from=audio) as writer:
            for index, frame in enumerate(bar):
                if index >= len(tracked):
                    raise RuntimeError(
                        f"the second read gave more than the {len(tracked)} frames of the first; "
                        "not writing frames whose faces were never detected"
                    )
                faces = tracked[index]
                ids = None
                if assigner is not None:
                    ids = [assigner.identity(t.track_id) for t in faces]
                    identities.update({str(t.track_id): i for t, i in zip(faces, ids, strict=True)})
                result = pipeline.frames(
                    frame,
                    [t.face for t in faces],
                    ids,
                    pipeline.perception.person_mask(frame),
                    seed=pipeline.frame_seed(job.rel, index),
                )
                writer.write(result.image)
                record.faces_found += sum(not t.interpolated for t in faces)
                record.faces_interpolated += sum(t.interpolated for t in faces)
                record.anonymized += result.anonymized
                record.add_fallbacks(result.fallbacks)
            if writer.frames_written != len(tracked):
                raise RuntimeError(
                    f"the second read gave {writer.frames_written} frames, the first "
                    f"{len(tracked)}; output not written"
                )
    record.frames = len(tracked)
    record.identities = identities if assigner is not None else None
    if pipeline.auditor is not None:
        report = pipeline.auditor.audit_video(job.src, tracked, job.dst)
        record.audit_checked, record.audit_flagged = report.checked, report.flagged
    record.seconds = round(time.perf_counter() - start, 3)
    return tracked
