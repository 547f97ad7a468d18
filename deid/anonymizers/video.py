"""Videos in two passes, so every frame's faces are known before any frame is written.

Pass 1 reads every frame and keeps only its faces (boxes, + 68 landmarks for landmark
methods), never the frames; detection runs on the run's `workers` threads (started once per
run, each keeping its own models for every pass and file; MediaPipe and torch release the
GIL, dlib's landmark predictor does not), so both cores work, and so does pass 2's anonymization (frames in pairs, one method
call each, `FrameAnonymizer.many`; results written in frame order). Up to 16 items per worker
are in flight, so a slow frame (MTCNN looks at every 8th) does not idle the other worker;
fewer for large frames (256 MB at most). `track_video` then links faces
into tracks, smooths boxes and landmarks over time (Savitzky-Golay), fills gaps of up to
`max_gap` frames where the detector missed a tracked face, and, when the detector looks at
every k-th frame only (`--detect-every`, or a union member's `every`), holds each track k-1
frames longer at both ends. Pass 2 reads the frames again (decoding in a thread ahead of the
work), anonymizes each with its tracked faces, each track keeping one fake identity
(`IdentityPolicy`), and writes them at the source's frame rate and frame count, in H.264 by an
ffmpeg child process (in parallel) for H.264 sources and mp4-family outputs, plus the source's
audio. Any error removes the unfinished output (atomic write); a second pass that decodes a
different number of frames than the first is such an error, since frames beyond the first pass
would have no faces to anonymize. With `--audit` a third pass reads source and output together.

Memory: faces (a few KB per frame) and the frames in flight. Cost: the video is decoded twice.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, wait
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
from tqdm import tqdm

from deid.anonymizers.audit import AuditReport
from deid.anonymizers.frame import FrameInput, FrameResult
from deid.anonymizers.inputs import Job
from deid.anonymizers.pipeline import Pipeline
from deid.anonymizers.summary import FileRecord
from deid.anonymizers.tracking import TrackedFace, track_video
from deid.faces.types import Face
from deid.media import VideoReader, VideoWriter, find_ffmpeg, has_audio
from deid.media.ffmpeg import video_codec

Item = TypeVar("Item")
Result = TypeVar("Result")
H264_CONTAINERS = (".mp4", ".m4v", ".mov")
MAX_BITRATE_RATIO = 1.4  # H.264 output capped at this multiple of the source's bitrate
AHEAD = 16  # items per worker in flight: a slow frame (MTCNN every 8th) must not idle the rest
IN_FLIGHT_BYTES = 256 * 2**20  # ... but never more frame memory than this (4K frames: 10)
FRAMES_PER_CALL = 2  # frames whose faces go through the method in one call (one batch)


def prefetch(items: Iterable[Item], depth: int = 8) -> Iterator[Item]:
    """Iterate `items` in a background thread, up to `depth` ahead (decoding overlaps work)."""
    buffer: queue.Queue[Any] = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                buffer.put(item)
            buffer.put(done)
        except BaseException as err:  # handed to the consumer, re-raised there
            buffer.put(err)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                buffer.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


@contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    """Torch's intra-op threads while `count` worker threads run torch models at once."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _bar(pipeline: Pipeline, items: Iterable[Item], total: int | None, desc: str) -> Any:
    return tqdm(
        items,
        total=total or None,
        desc=desc,
        unit="frame",
        leave=False,
        disable=None if pipeline.progress else True,
    )


def items_ahead(size: tuple[int, int], frames_per_item: int, workers: int) -> int:
    """How many items may wait per worker: `AHEAD`, less for large frames."""
    item_bytes = size[0] * size[1] * 3 * 2 * frames_per_item  # the frame and its result
    return max(1, min(AHEAD, IN_FLIGHT_BYTES // (item_bytes * workers)))


def ordered_map(
    pipeline: Pipeline,
    work: Callable[[int, Item], Result],
    items: Iterable[Item],
    ahead: int = 2,
) -> Iterator[Result]:
    """`work(index, item)` for every item on the run's worker threads (each with its own
    perception models), results in input order, up to `ahead` items per worker in flight;
    torch gets cores / workers threads meanwhile. Without a perception factory (injected
    detector) everything runs on this thread."""
    workers = pipeline.workers
    if workers == 1:
        yield from (work(index, item) for index, item in enumerate(items))
        return
    pending: deque[Future[Result]] = deque()
    cores = max(1, (os.cpu_count() or 1) // workers)
    pool = pipeline.pool()
    with _torch_threads(cores):
        try:
            for index, item in enumerate(items):
                pending.append(pool.submit(work, index, item))
                while len(pending) > ahead * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # an error or an early stop: no work of this pass outlives it
            for future in pending:
                future.cancel()
            wait(pending)


def detect_faces(pipeline: Pipeline, reader: VideoReader, label: str) -> list[list[Face]]:
    """Pass 1: the faces of every frame, detected on worker threads."""
    frames = _bar(pipeline, prefetch(reader), reader.frame_count, f"{label} [1/2 faces]")

    def detect(index: int, frame: np.ndarray) -> list[Face]:
        return pipeline.thread_perception().faces(frame, index)

    ahead = items_ahead(reader.size, 1, pipeline.workers)
    return list(ordered_map(pipeline, detect, frames, ahead))


def chunked(items: Iterable[Item], size: int) -> Iterator[list[tuple[int, Item]]]:
    """Consecutive (index, item) pairs, `size` at a time (the last chunk may be shorter)."""
    chunk: list[tuple[int, Item]] = []
    for pair in enumerate(items):
        chunk.append(pair)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _audio_source(pipeline: Pipeline, job: Job) -> str | None:
    if not pipeline.settings.video.audio:
        return None
    ffmpeg = find_ffmpeg()
    try:
        return str(job.src) if ffmpeg is not None and has_audio(job.src, ffmpeg) else None
    except (OSError, RuntimeError):
        return None


def output_codec(pipeline: Pipeline, job: Job) -> str:
    """`h264` for H.264 sources and mp4-family outputs (setting `auto`), else the setting."""
    choice = pipeline.settings.video.codec
    if choice != "auto":
        return choice
    if find_ffmpeg() is None:
        return "opencv"
    if job.dst.suffix.lower() in H264_CONTAINERS or video_codec(job.src) == "h264":
        return "h264"
    return "opencv"


def _writer(pipeline: Pipeline, job: Job, reader: VideoReader) -> VideoWriter:
    video = pipeline.settings.video
    maxrate = None
    seconds = (reader.frame_count or 0) / reader.fps
    if seconds > 0:
        maxrate = MAX_BITRATE_RATIO * 8 * job.src.stat().st_size / seconds
    return VideoWriter(
        job.dst,
        reader.fps,
        reader.size,
        audio_from=_audio_source(pipeline, job),
        codec=output_codec(pipeline, job),
        crf=video.crf,
        preset=video.preset,
        maxrate=maxrate,
    )


def process_video(pipeline: Pipeline, job: Job, record: FileRecord) -> list[list[TrackedFace]]:
    """Anonymize one video into `job.dst`; fills `record`; returns the tracked faces per frame."""
    start = time.perf_counter()
    settings = pipeline.settings.video
    with VideoReader(job.src) as reader:
        detections = detect_faces(pipeline, reader, job.rel)
        tracked = track_video(
            detections,
            iou_threshold=settings.iou_threshold,
            max_gap=settings.max_gap,
            window=settings.window,
            polyorder=settings.polyorder,
            extend=pipeline.perception.detector.frame_step - 1,
        )
        assigner = pipeline.identities.assigner(job)
        identities: dict[str, int] = {}
        results: list[FrameResult] = []
        frames = _bar(pipeline, prefetch(reader), len(tracked), f"{job.rel} [2/2 anonymize]")

        def frame_input(index: int, frame: np.ndarray) -> FrameInput:
            if index >= len(tracked):
                raise RuntimeError(
                    f"the second read gave more than the {len(tracked)} frames of the first; "
                    "not writing frames whose faces were never detected"
                )
            faces = tracked[index]
            ids = None if assigner is None else [assigner.identity(t.track_id) for t in faces]
            return FrameInput(
                frame,
                [t.face for t in faces],
                ids,
                pipeline.thread_perception().person_mask(frame),
                seed=pipeline.frame_seed(job.rel, index),
            )

        def anonymize(_: int, chunk: list[tuple[int, np.ndarray]]) -> list[FrameResult]:
            return pipeline.frames.many([frame_input(index, frame) for index, frame in chunk])

        ahead = items_ahead(reader.size, FRAMES_PER_CALL, pipeline.workers)
        chunks = ordered_map(pipeline, anonymize, chunked(frames, FRAMES_PER_CALL), ahead)
        with _writer(pipeline, job, reader) as writer:
            for index, result in enumerate(r for chunk in chunks for r in chunk):
                writer.write(result.image)
                faces = tracked[index]
                if assigner is not None:
                    identities.update(
                        {str(t.track_id): assigner.identity(t.track_id) for t in faces}
                    )
                if pipeline.auditor is not None:
                    results.append(
                        FrameResult(image=np.empty(0), regions=result.regions, mask=result.mask)
                    )
                record.faces_found += sum(not t.interpolated for t in faces)
                record.faces_interpolated += sum(t.interpolated for t in faces)
                record.anonymized += result.anonymized
                record.add_fallbacks(result.fallbacks)
                record.add_fallbacks(result.method_fallbacks, method=True)
            if writer.frames_written != len(tracked):
                raise RuntimeError(
                    f"the second read gave {writer.frames_written} frames, the first "
                    f"{len(tracked)}; output not written"
                )
    record.frames = len(tracked)
    record.identities = identities if assigner is not None else None
    if pipeline.auditor is not None:
        record.audit = audit_video(pipeline, job, results)
    record.seconds = round(time.perf_counter() - start, 3)
    return tracked


def audit_video(pipeline: Pipeline, job: Job, results: list[FrameResult]) -> AuditReport:
    """Every frame of the written video against the source frame and what was anonymized."""
    report = AuditReport()
    with VideoReader(job.src) as source, VideoReader(job.dst) as output:
        pairs = prefetch(zip(source, output, strict=False))
        for index, (before, after) in enumerate(
            _bar(pipeline, pairs, len(results), f"{job.rel} [audit]")
        ):
            if index >= len(results):
                break
            report.add(pipeline.audit(before, after, results[index], index))
    return report
