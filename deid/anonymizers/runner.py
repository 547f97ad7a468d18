"""anonymize(cfg): anonymize images, folders and videos with a chosen anonymizer.

`python anonymize.py in=PATH out=PATH [anonymizer=NAME] ...` and `deid anonymize` both end
here. The run: plan the outputs (`inputs.py`), build the method, detector, landmarks, person
segmenter, identity policy and auditor once (`build_pipeline`), process every file (images
in `pipeline.py`, videos in `video.py`; an unreadable or failing file is reported and skipped),
then print the summary and write it as JSON (`summary.py`).

Exit codes: 0 done (also with skipped files or fallbacks, unless strict); 2 a user error
before anything was processed (bad input path, output onto an input, unknown method, missing
checkpoint, bad key); 3 `strict=true` and some face fell back, some file failed or, with
`audit=true`, some output face still matched its source (raised after every file was
processed and the summary written).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from tqdm import tqdm

from deid.anonymizers.base import NEEDS_LANDMARKS, NEEDS_PERSON_MASK, Anonymizer
from deid.anonymizers.fallback import FALLBACK_MODES
from deid.anonymizers.frame import FrameAnonymizer
from deid.anonymizers.identity_keys import IdentityAssigner, key_fingerprint, load_secret_key
from deid.anonymizers.inputs import Job, plan_jobs
from deid.anonymizers.perception import Perception
from deid.anonymizers.pipeline import (
    IdentityPolicy,
    Pipeline,
    VideoSettings,
    new_record,
    process_image,
)
from deid.anonymizers.summary import FileRecord, Summary
from deid.anonymizers.video import process_video
from deid.errors import BadInputError, DeidError
from deid.faces import FaceDetector
from deid.hydra_entry import instantiate_unwrapped

TARGETS = ("face", "body")


class IncompleteAnonymizationError(DeidError):
    """strict=true and not every face was anonymized by the chosen method."""

    exit_code = 3


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _inputs_and_output(cfg: DictConfig) -> tuple[list[str], str]:
    for key, hint in (("in", "in=PATH (an image, a video or a folder)"), ("out", "out=PATH")):
        if OmegaConf.is_missing(cfg, key) or cfg[key] is None:
            raise DeidError(f"missing {hint}; e.g. python anonymize.py in=photos/ out=anonymized/")
    value = cfg["in"]
    inputs = (
        [str(v) for v in value] if isinstance(value, ListConfig | list | tuple) else [str(value)]
    )
    return inputs, str(cfg["out"])


def _choice(cfg: DictConfig, key: str, choices: Sequence[str]) -> str:
    value = str(cfg.get(key))
    if value not in choices:
        raise DeidError(f"{key}={value} is not one of {', '.join(choices)}")
    return value


def _build_method(cfg: DictConfig) -> Anonymizer:
    if cfg.get("anonymizer") is None:
        raise DeidError("no anonymizer chosen: anonymizer=blur17 (any conf/anonymizer/*.yaml)")
    return instantiate_unwrapped(cfg.anonymizer, "anonymizer")


def _build_detector(cfg: DictConfig) -> FaceDetector:
    from deid.faces import build_detector

    options = dict(OmegaConf.to_container(cfg.detector, resolve=True))  # type: ignore[arg-type]
    return build_detector(str(options.pop("name")), **options)


def _identity_policy(cfg: DictConfig, method: Anonymizer) -> tuple[IdentityPolicy, dict[str, Any]]:
    key_value = cfg.get("key")
    key = load_secret_key(None if key_value is None else str(key_value))
    num = getattr(method, "num_identities", None)
    fixed = None if cfg.get("identity") is None else int(cfg.identity)
    camera = None if cfg.get("camera") is None else str(cfg.camera)
    info: dict[str, Any] = {"control": num is not None}
    if num is None:
        if fixed is not None:
            _warn(f"identity={fixed} ignored: {method.name} has no identity control")
        return IdentityPolicy(key, None), info
    IdentityAssigner(key, camera or "", int(num), fixed)  # checks identity= against the model
    method_fixed = getattr(method, "identity", None)
    info["num_identities"] = int(num)
    if method_fixed is not None:
        info["mode"] = f"fixed by the method's own setting (anonymizer.identity={method_fixed})"
    elif fixed is not None:
        info["mode"] = f"fixed: identity {fixed} for every face"
    else:
        info["mode"] = "keyed: HMAC(key, camera, track) per person and camera"
        info["camera"] = camera if camera is not None else "each file's relative path"
        info["key"] = "given" if key_value is not None else "random, new for this run"
        if key_value is not None:
            info["key_fingerprint"] = key_fingerprint(key)
    return IdentityPolicy(key, int(num), fixed, camera), info


def build_pipeline(
    cfg: DictConfig, method: Anonymizer, detector: FaceDetector | None = None
) -> tuple[Pipeline, dict[str, Any]]:
    """The run's models and policies from `cfg`; also the settings the summary records."""
    target = _choice(cfg, "target", TARGETS)
    fallback = _choice(cfg, "fallback", FALLBACK_MODES)
    detector = detector if detector is not None else _build_detector(cfg)
    landmarks = segmenter = None
    if NEEDS_LANDMARKS in method.needs:
        from deid.faces import LandmarkPredictor

        landmarks = LandmarkPredictor()
    if target == "body" or NEEDS_PERSON_MASK in method.needs:
        from deid.bodies import build_segmenter

        segmenter = build_segmenter(str(cfg.get("segmenter", "mediapipe")))
        if NEEDS_PERSON_MASK not in method.needs:
            _warn(f"target=body: {method.name} does not use person masks; it anonymizes faces")
    if method.name == "original":
        _warn("anonymizer=original does not anonymize: every face is written unchanged")
    auditor = None
    threshold = float(cfg.get("audit_threshold", 1.2))
    if cfg.get("audit"):
        from deid.anonymizers.audit import Auditor
        from deid.faces import build_embedder

        embedder = build_embedder(str(cfg.get("audit_embedder", "facenet_casia")))
        auditor = Auditor(detector, embedder, threshold)
    identities, identity_info = _identity_policy(cfg, method)
    video_cfg = cfg.get("video") or {}
    video = VideoSettings(**dict(video_cfg))
    pipeline = Pipeline(
        perception=Perception(detector, landmarks, segmenter),
        frames=FrameAnonymizer(method, fallback, float(cfg.get("fallback_expand", 0.25))),
        identities=identities,
        auditor=auditor,
        video=video,
        seed=int(cfg.get("seed", 0)),
        jpeg_quality=int(cfg.get("jpeg_quality", 95)),
        progress=bool(cfg.get("progress", True)),
    )
    settings: dict[str, Any] = {
        "anonymizer": method.name,
        "detector": str(cfg.detector.name) if cfg.get("detector") else type(detector).__name__,
        "target": target,
        "fallback": fallback,
        "strict": bool(cfg.get("strict", False)),
        "identities": identity_info,
        "video": dict(OmegaConf.to_container(video_cfg)) if video_cfg else {},  # type: ignore[arg-type]
    }
    if auditor is not None:
        settings["audit_threshold"] = threshold
    return pipeline, settings


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


def _process(pipeline: Pipeline, job: Job) -> FileRecord:
    record = new_record(job)
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
    if counts["failures"]:
        problems.append(f"{counts['failures']} files failed")
    if summary.audit and summary.flagged:
        problems.append(f"{len(summary.flagged)} files failed the audit")
    if problems:
        raise IncompleteAnonymizationError(f"strict: {', '.join(problems)} (details in {path})")


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
    inputs, out = _inputs_and_output(cfg)
    plan = plan_jobs(inputs, out)
    method = anonymizer if anonymizer is not None else _build_method(cfg)
    pipeline, settings = build_pipeline(cfg, method, detector)
    settings["config"] = redacted_config(cfg)
    summary = Summary(settings, audit=pipeline.auditor is not None)
    bar = tqdm(
        plan.jobs, desc="anonymize", unit="file", disable=None if pipeline.progress else True
    )
    for job in bar:
        bar.set_postfix_str(job.rel[-40:], refresh=False)
        summary.records.append(_process(pipeline, job))
    summary.seconds = time.perf_counter() - start
    summary.write(plan.summary)
    print(summary.text())
    print(f"summary: {plan.summary}")
    if settings["strict"]:
        check_strict(summary, plan.summary)
    return summary.to_json()
