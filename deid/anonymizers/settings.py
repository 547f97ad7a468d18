"""The anonymize run's settings as one typed structure, read from the config in one place.

`conf/anonymize.yaml` holds the defaults; `AnonymizeSettings.from_config(cfg)` checks every value
(types, choices, ranges) and is the only code that reads the raw config. Detector names may be
joined with `+` (`dlib_hog+mtcnn`, see `deid.faces.detectors.named`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from deid.anonymizers.fallback import FALLBACK_MODES
from deid.errors import DeidError
from deid.faces.detectors.named import detector_spec
from deid.hydra_entry import known_names

TARGETS = ("face", "body")
VIDEO_CODECS = ("auto", "h264", "opencv")


def method_names() -> list[str]:
    """The methods a user can name (`conf/model/*.yaml`, the group evaluate.py picks from)."""
    return known_names("model")


@dataclass(frozen=True)
class AuditSettings:
    """`--audit` (`audit=true`) and its `audit_options`: coverage and similarity checked with an
    independent detector (see audit.py)."""

    enabled: bool = False
    detector: str = "auto"  # a name or a+b; auto: an independent high-recall one
    threshold: float = 1.2  # FaceNet squared L2 below which an output face still matches
    embedder: str = "facenet_casia"
    min_face: int = 32  # px: smaller faces are checked for coverage, not compared
    coverage: float = 0.5  # share of an audit face's box that must have been anonymized


@dataclass(frozen=True)
class VideoSettings:
    """Tracking, smoothing and gap filling (see `deid.anonymizers.tracking.track_video`),
    and how the output is encoded."""

    max_gap: int = 5
    window: int = 5
    polyorder: int = 2
    iou_threshold: float = 0.3
    audio: bool = True  # copy the source's audio track when it has one and ffmpeg exists
    codec: str = "auto"  # auto: H.264 for H.264 inputs and mp4/m4v/mov outputs; else OpenCV's
    crf: int = 20  # libx264 quality (lower is better and bigger)
    preset: str = "veryfast"


@dataclass(frozen=True)
class AnonymizeSettings:
    """Everything `anonymize()` needs besides the method itself."""

    inputs: list[str]
    output: str
    detector: dict[str, Any]
    target: str = "face"
    segmenter: str = "mediapipe"
    fallback: str = "blur"
    fallback_expand: float = 0.25
    strict: bool = False
    overwrite: bool = False
    identity: int | None = None
    key: str | None = None  # hex, @file, a file path or env:NAME; never recorded
    camera: str | None = None
    link_photos: bool = True
    link_threshold: float = 1.0
    detect_scale: float = 1.0
    detect_every: int = 1
    workers: int = 0  # detection threads; 0 = one per CPU core
    jpeg_quality: int = 95
    seed: int = 0
    progress: bool = True
    audit: AuditSettings = field(default_factory=AuditSettings)
    video: VideoSettings = field(default_factory=VideoSettings)

    @classmethod
    def from_config(cls, cfg: DictConfig) -> AnonymizeSettings:
        inputs, output = _inputs_and_output(cfg)
        options = {"enabled": bool(cfg.get("audit", False))}
        if cfg.get("audit_options") is not None:
            options.update(OmegaConf.to_container(cfg.audit_options, resolve=True))  # type: ignore[arg-type]
        audit = _typed(AuditSettings, options, "audit_options")
        video = _section(VideoSettings, cfg.get("video"), "video")
        plain = {
            name: cfg.get(name)
            for name in cls.__dataclass_fields__
            if name not in ("inputs", "output", "detector", "audit", "video") and name in cfg
        }
        settings = _typed(
            cls,
            {**plain, "inputs": inputs, "output": output, "detector": {}},
            "anonymize",
        )
        settings = _replace(
            settings,
            detector=detector_spec(cfg.get("detector") or "default"),
            audit=audit,
            video=video,
        )
        settings.check()
        return settings

    def check(self) -> None:
        _choice("target", self.target, TARGETS)
        _choice("fallback", self.fallback, FALLBACK_MODES)
        _choice("video.codec", self.video.codec, VIDEO_CODECS)
        if not 0.05 <= self.detect_scale <= 4:
            raise DeidError(f"detect_scale={self.detect_scale} must lie in [0.05, 4]")
        if self.detect_every < 1:
            raise DeidError(f"detect_every={self.detect_every} must be at least 1")
        if self.detect_every - 1 > self.video.max_gap:
            raise DeidError(
                f"detect_every={self.detect_every} needs video.max_gap >= {self.detect_every - 1} "
                f"(tracks must bridge the frames without detection; it is {self.video.max_gap})"
            )
        if not 0 < self.audit.coverage <= 1:
            raise DeidError(f"audit.coverage={self.audit.coverage} must lie in (0, 1]")
        if self.workers < 0:
            raise DeidError(f"workers={self.workers} must be 0 (one per core) or more")

    def fingerprint_fields(self) -> dict[str, Any]:
        """What decides an output's content (a re-run reuses outputs made with the same)."""
        return {
            "detector": self.detector,
            "target": self.target,
            "segmenter": self.segmenter,
            "fallback": self.fallback,
            "fallback_expand": self.fallback_expand,
            "identity": self.identity,
            "camera": self.camera,
            "link_photos": self.link_photos,
            "link_threshold": self.link_threshold,
            "detect_scale": self.detect_scale,
            "detect_every": self.detect_every,
            "jpeg_quality": self.jpeg_quality,
            "seed": self.seed,
            "video": {k: v for k, v in vars(self.video).items()},
        }


def _replace(settings: AnonymizeSettings, **changes: Any) -> AnonymizeSettings:
    from dataclasses import replace

    return replace(settings, **changes)


def _inputs_and_output(cfg: DictConfig) -> tuple[list[str], str]:
    for key, hint in (("in", "in=PATH (an image, a video or a folder)"), ("out", "out=PATH")):
        if OmegaConf.is_missing(cfg, key) or cfg.get(key) is None:
            raise DeidError(f"missing {hint}; e.g. python anonymize.py in=photos/ out=anonymized/")
    value = cfg["in"]
    inputs = (
        [str(v) for v in value] if isinstance(value, ListConfig | list | tuple) else [str(value)]
    )
    return inputs, str(cfg["out"])


def _section(cls: type, value: Any, where: str) -> Any:
    if value is None:
        return cls()
    data = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    if not isinstance(data, dict):
        raise DeidError(f"{where} must be a mapping of settings, got {value!r}")
    return _typed(cls, data, where)


def _typed(cls: type, data: dict[str, Any], where: str) -> Any:
    """`cls(**data)` with OmegaConf's type checks; unknown keys and bad values in one line."""
    from omegaconf.errors import OmegaConfBaseException

    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise DeidError(
            f"{where}: unknown setting {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls), data)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        first = " ".join(str(err).split("\n")[0].split())
        raise DeidError(f"{where}: {first}") from None


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise DeidError(f"{key}={value} is not one of {', '.join(choices)}")
