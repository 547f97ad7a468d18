"""anonymize(cfg): anonymize images, folders and videos with a chosen anonymizer.

`python anonymize.py in=PATH out=PATH [model=NAME] ...`, `deid anonymize` and
`deid.anonymize_path` all end here. The run: read the settings (`settings.py`), plan the outputs
(`inputs.py`) and check that they can be written (before any work), build the method, detector,
landmarks, person segmenter, identity policy and auditor once (`build_pipeline`), then process
every file (images in `pipeline.py`, videos in `video.py`; an unreadable or failing file is
reported and skipped), rewriting the summary JSON after each (`summary.py`). A re-run skips the
outputs an earlier run completed with the same settings (unless `overwrite`) and first removes
the temp files a killed run left beside the outputs.

Exit codes: 0 done (also with skipped files or fallbacks, unless strict); 2 a user error
before anything was processed (bad input path, unwritable output, output onto an input,
unknown method, missing checkpoint, bad key); 3 `strict=true` and some face (or a region the
method could not process) fell back, some file failed or, with `audit=true`, the audit found a
missed or a still matching face (raised after every file was processed and the summary written).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from deid.anonymizers.base import NEEDS_LANDMARKS, NEEDS_PERSON_MASK, Anonymizer
from deid.anonymizers.frame import FrameAnonymizer
from deid.anonymizers.identity_keys import IdentityAssigner, key_fingerprint, load_secret_key
from deid.anonymizers.inputs import Job, Plan, plan_jobs
from deid.anonymizers.perception import Perception
from deid.anonymizers.pipeline import IdentityPolicy, Pipeline, new_record, process_image
from deid.anonymizers.settings import AnonymizeSettings
from deid.anonymizers.summary import FileRecord, Summary, completed_outputs, settings_fingerprint
from deid.anonymizers.video import process_video
from deid.errors import BadInputError, DeidError
from deid.faces import FaceDetector
from deid.faces.detectors.named import detector_label, detector_spec, spec_names
from deid.hydra_entry import instantiate_unwrapped, known_names


class IncompleteAnonymizationError(DeidError):
    """strict=true and not every face was anonymized by the chosen method."""

    exit_code = 3


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def option(cfg: DictConfig, key: str, value: str = "PATH") -> str:
    """How the user sets `key` in the interface they typed: `--ckpt PATH` or `ckpt=PATH`."""
    if cfg.get("interface") == "cli":
        return f"--{key.replace('_', '-')} {value}"
    return f"{key}={value}"


def build_method(cfg: DictConfig) -> Anonymizer:
    if cfg.get("model") is None:
        name = "anonymizer" if cfg.get("interface") == "cli" else "model"
        raise DeidError(f"no method chosen: {option(cfg, name, 'blur')}")
    spec = cfg.model
    if "path" in spec and OmegaConf.is_interpolation(spec, "path") and cfg.get("ckpt") is None:
        target = str(spec.get("_target_", "")).split(".")[0] or "this method"
        demos = [n for n in known_names("experiment") if n.startswith(f"{target}_demo")]
        how = f" (train one: `python train.py experiment={demos[-1]}`)" if demos else ""
        raise DeidError(
            f"{target} needs a checkpoint: add "
            f"{option(cfg, 'ckpt', '<run>/checkpoints/last.ckpt')}{how}"
        )
    return instantiate_unwrapped(spec, "anonymizer")


def build_detector(spec: dict[str, Any], settings: AnonymizeSettings) -> FaceDetector:
    """The anonymizing detector: the configured one, downscaled and frame-skipping as set."""
    from deid.faces.detectors import build_detector_spec
    from deid.faces.detectors.compose import FrameSkipDetector

    spec = dict(spec)
    if settings.detect_scale != 1:
        spec["scale"] = settings.detect_scale
    detector = build_detector_spec(spec)
    if settings.detect_every > 1:
        detector = FrameSkipDetector(detector, settings.detect_every)
    return detector


def _identity_policy(
    settings: AnonymizeSettings, method: Anonymizer
) -> tuple[IdentityPolicy, dict[str, Any]]:
    key_value = settings.key if settings.key is not None else os.environ.get("DEID_KEY")
    key = load_secret_key(key_value)
    num = getattr(method, "num_identities", None)
    fixed = settings.identity
    info: dict[str, Any] = {"control": num is not None}
    if num is None:
        if fixed is not None:
            _warn(f"identity={fixed} ignored: {method.name} has no identity control")
        return IdentityPolicy(key, None), info
    IdentityAssigner(
        key, settings.camera or "", int(num), fixed
    )  # checks identity= against the model
    method_fixed = getattr(method, "identity", None)
    info["num_identities"] = int(num)
    if method_fixed is not None:
        info["mode"] = f"fixed by the method's own setting (anonymizer.identity={method_fixed})"
    elif fixed is not None:
        info["mode"] = f"fixed: identity {fixed} for every face"
    else:
        info["mode"] = "keyed: HMAC(key, camera, person) per person and camera"
        info["camera"] = settings.camera or (
            "each video's path; each photo folder (faces linked into persons by FaceNet)"
            if settings.link_photos
            else "each file's relative path"
        )
        source = "given" if settings.key is not None else "$DEID_KEY" if key_value else None
        info["key"] = source or "random, new for this run"
        if source:
            info["key_fingerprint"] = key_fingerprint(key)
    policy = IdentityPolicy(key, int(num), fixed, settings.camera, settings.link_photos)
    return policy, info


def _auditor(settings: AnonymizeSettings, used: set[str]) -> tuple[Any, str]:
    from deid.anonymizers.audit import Auditor, independent_detector
    from deid.faces import build_embedder
    from deid.faces.detectors import build_detector_spec

    audit = settings.audit
    name = independent_detector(used) if audit.detector == "auto" else audit.detector
    spec = detector_spec(name)
    if audit.detector != "auto" and spec_names(spec) & used:
        _warn(
            f"the audit detector {detector_label(spec)} is also the anonymizing detector: it "
            "cannot see what that one misses"
        )
    auditor = Auditor(
        build_detector_spec(spec),
        build_embedder(audit.embedder),
        audit.threshold,
        audit.min_face,
        audit.coverage,
    )
    return auditor, detector_label(spec)


def build_pipeline(
    settings: AnonymizeSettings,
    method: Anonymizer,
    detector: FaceDetector | None = None,
) -> tuple[Pipeline, dict[str, Any]]:
    """The run's models and policies; also the settings the summary records."""
    needs_landmarks = NEEDS_LANDMARKS in method.needs
    needs_mask = settings.target == "body" or NEEDS_PERSON_MASK in method.needs
    if settings.target == "body" and NEEDS_PERSON_MASK not in method.needs:
        _warn(f"target=body: {method.name} does not use person masks; it anonymizes faces")
    if method.name == "original":
        _warn("the method original does not anonymize: every face is written unchanged")

    shared_landmarks = None
    if needs_landmarks:  # one for all threads: dlib's predictor keeps no state between calls
        from deid.faces import LandmarkPredictor

        shared_landmarks = LandmarkPredictor()

    def make_perception(given: FaceDetector | None = None) -> Perception:
        landmarks, segmenter = shared_landmarks, None
        if needs_mask:
            from deid.bodies import build_segmenter

            segmenter = build_segmenter(settings.segmenter)
        found = given if given is not None else build_detector(settings.detector, settings)
        return Perception(found, landmarks, segmenter)

    perception = make_perception(detector)
    identities, identity_info = _identity_policy(settings, method)
    used = spec_names(settings.detector)
    auditor = audit_label = linker = None
    if settings.audit.enabled:
        auditor, audit_label = _auditor(settings, used)
    if identities.num_identities is not None and settings.link_photos and identities.fixed is None:
        from deid.anonymizers.linking import PhotoLinker
        from deid.faces import build_embedder

        linker = PhotoLinker(lambda: build_embedder("facenet_casia"), settings.link_threshold)
    pipeline = Pipeline(
        settings=settings,
        perception=perception,
        frames=FrameAnonymizer(method, settings.fallback, settings.fallback_expand),
        identities=identities,
        make_perception=None if detector is not None else make_perception,
        auditor=auditor,
        linker=linker,
    )
    recorded: dict[str, Any] = {
        "anonymizer": method.name,
        "detector": (
            detector_label(settings.detector)
            if detector is None
            else getattr(detector, "name", "") or type(detector).__name__
        ),
        "detector_config": settings.detector,
        "detect_scale": settings.detect_scale,
        "detect_every": settings.detect_every,
        "target": settings.target,
        "fallback": settings.fallback,
        "strict": settings.strict,
        "identities": identity_info,
        "video": vars(settings.video),
    }
    if auditor is not None:
        recorded["audit_detector"] = audit_label
        recorded["audit_options"] = vars(settings.audit)
    return pipeline, recorded


def redacted_config(cfg: DictConfig) -> dict[str, Any]:
    """The run's config without Hydra/paths internals and without the secret key."""
    data = {
        k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
        for k, v in cfg.items()
        if k not in ("hydra", "paths")
    }
    if data.get("key") is not None:
        data["key"] = "<secret: not recorded>"
    return data


def check_outputs_writable(plan: Plan) -> None:
    """Fail in one line, before any work, when an output folder cannot be made or written."""
    folders = {job.dst.parent for job in plan.jobs} | {plan.summary.parent}
    for folder in sorted(folders):
        existing = folder
        while not existing.exists():
            if existing.parent == existing:
                break
            existing = existing.parent
        if not existing.is_dir():
            raise DeidError(f"cannot write outputs under {folder}: {existing} is a file")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise DeidError(f"cannot write outputs under {folder}: {existing} is not writable")


def remove_stale_temps(plan: Plan) -> int:
    """Delete the hidden temp files a killed run left beside this run's outputs."""
    removed = 0
    for target in [job.dst for job in plan.jobs] + [plan.summary]:
        if not target.parent.is_dir():
            continue
        for temp in target.parent.glob(f".{target.name}.*.tmp{target.suffix}"):
            temp.unlink(missing_ok=True)
            removed += 1
    return removed


def _process(pipeline: Pipeline, job: Job) -> FileRecord:
    try:
        record = new_record(job)
    except OSError as err:
        return FileRecord(str(job.src), str(job.dst), job.kind, "failed", err.strerror)
    try:
        if job.kind == "video":
            process_video(pipeline, job, record)
        else:
            process_image(pipeline, job, record)
    except BadInputError as err:
        record.status, record.reason = "failed", err.reason
    except Exception as err:  # one broken file must not stop the run; reported, never hidden
        message = " ".join(str(err).split())
        record.status, record.reason = "failed", f"{type(err).__name__}: {message}"
    if record.status != "ok":
        tqdm.write(f"skipped {job.src}: {record.reason}", file=sys.stderr)
    return record


def check_strict(summary: Summary, path: Path) -> None:
    counts = summary.counts()
    problems = []
    if counts["fallbacks"]:
        fallback = summary.settings.get("fallback")
        problems.append(f"{counts['fallbacks']} faces fell back to {fallback}")
    if counts["method_fallbacks"]:
        name = summary.settings.get("anonymizer")
        problems.append(f"{counts['method_fallbacks']} regions {name} could not process fell back")
    if counts["failures"]:
        problems.append(f"{counts['failures']} files failed")
    if summary.audit and counts["audit_missed"]:
        problems.append(f"the audit found {counts['audit_missed']} faces not anonymized")
    if summary.audit and counts["audit_still_matching"]:
        problems.append(f"{counts['audit_still_matching']} faces still match their source")
    if problems:
        raise IncompleteAnonymizationError(f"strict: {', '.join(problems)} (details in {path})")


def _fingerprint(cfg: DictConfig, settings: AnonymizeSettings, pipeline: Pipeline) -> str:
    method = OmegaConf.to_container(cfg.model, resolve=True) if cfg.get("model") else None
    checkpoint = None
    if cfg.get("ckpt") is not None and Path(str(cfg.ckpt)).is_file():
        stat = Path(str(cfg.ckpt)).stat()
        checkpoint = [str(cfg.ckpt), stat.st_size, stat.st_mtime]
    identities = pipeline.identities
    key = key_fingerprint(identities.key) if identities.num_identities is not None else None
    fields = {**settings.fingerprint_fields(), "method": method, "ckpt": checkpoint, "key": key}
    return settings_fingerprint(fields)


def _reusable(record: FileRecord | None, audit: bool) -> bool:
    return record is not None and (not audit or record.audit is not None)


def _run_jobs(
    pipeline: Pipeline,
    plan: Plan,
    settings: AnonymizeSettings,
    earlier: dict[str, FileRecord],
    summary: Summary,
    start: float,
) -> None:
    """Every job in order, the summary rewritten after each (a crash leaves what finished)."""
    jobs: Sequence[Job] = plan.jobs
    bar = tqdm(jobs, desc="anonymize", unit="file", disable=None if settings.progress else True)
    for job in bar:
        bar.set_postfix_str(job.rel[-40:], refresh=False)
        previous = earlier.get(str(job.src))
        if _reusable(previous, settings.audit.enabled):
            assert previous is not None
            previous.reused = True
            summary.records.append(previous)
            if pipeline.linker is not None and job.kind == "image":
                register_photo(pipeline, job)
        else:
            summary.records.append(_process(pipeline, job))
        summary.seconds = time.perf_counter() - start
        summary.write(plan.summary)


def anonymize(
    cfg: DictConfig,
    *,
    anonymizer: Anonymizer | None = None,
    detector: FaceDetector | None = None,
) -> dict[str, Any]:
    """Anonymize `cfg.in` into `cfg.out`; returns the summary (also written as JSON).

    `anonymizer` / `detector` replace the ones `cfg` would build (for embedding and tests).
    """
    start = time.perf_counter()
    settings = AnonymizeSettings.from_config(cfg)
    plan = plan_jobs(settings.inputs, settings.output)
    check_outputs_writable(plan)
    method = anonymizer if anonymizer is not None else build_method(cfg)
    pipeline, recorded = build_pipeline(settings, method, detector)
    recorded["config"] = redacted_config(cfg)
    fingerprint = _fingerprint(cfg, settings, pipeline)
    earlier = {} if settings.overwrite else completed_outputs(plan.summary, fingerprint)
    if remove_stale_temps(plan):
        _warn("removed unfinished temp files an interrupted run left beside the outputs")
    summary = Summary(recorded, fingerprint, audit=settings.audit.enabled)
    try:
        _run_jobs(pipeline, plan, settings, earlier, summary, start)
    finally:
        pipeline.close()
    summary.finished = True
    summary.seconds = time.perf_counter() - start
    summary.write(plan.summary)
    print(summary.text())
    print(f"summary: {plan.summary}")
    if settings.strict:
        check_strict(summary, plan.summary)
    return summary.to_json()


def register_photo(pipeline: Pipeline, job: Job) -> None:
    """Let the person linker see a photo an earlier run completed, so persons keep numbers."""
    from deid.media import read_image

    try:
        image = read_image(job.src)
    except BadInputError:
        return
    pipeline.photo_identities(job, image, pipeline.perception.faces(image))
