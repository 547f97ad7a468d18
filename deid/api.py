"""The Python API for notebooks: the same pipeline as `deid anonymize`, on arrays and paths.

    import deid
    out, report = deid.anonymize_image(image)                      # RGB uint8 (H, W, 3)
    anonymizer = deid.ImageAnonymizer(method="ciagan", ckpt="last.ckpt", audit=True)
    out, report = anonymizer(image)                                # models built once
    summary = deid.anonymize_path("photos/", "anonymized/", method="pixel8")

Options are the settings of `conf/anonymize.yaml` (`detector="mtcnn"`, `key="@secret.key"`,
`fallback="blackbox"`, `audit=True`, `video={"max_gap": 10}` ...), checked as for the CLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from deid.hydra_entry import compose_redacted

_MEMORY = "<memory>"


def _config(method: str, ckpt: str | Path | None, options: dict[str, Any]) -> DictConfig:
    detector = options.pop("detector", "default")
    union = "+" in str(detector)
    cfg = compose_redacted(
        "anonymize", [f"model={method}", f"detector={'default' if union else detector}"]
    )
    with open_dict(cfg):
        if union:
            cfg.detector = OmegaConf.create({"name": detector})
        cfg.ckpt = None if ckpt is None else str(ckpt)
        cfg.progress = False
        for key, value in options.items():
            OmegaConf.update(cfg, key, value, merge=True)
    return cfg


class ImageAnonymizer:
    """Anonymize images held in memory; the models are built once, in the constructor."""

    def __init__(
        self, method: str = "blur", ckpt: str | Path | None = None, **options: Any
    ) -> None:
        from deid.anonymizers.runner import build_method, build_pipeline
        from deid.anonymizers.settings import AnonymizeSettings

        cfg = _config(method, ckpt, {"in": _MEMORY, "out": _MEMORY, **options})
        self.settings = AnonymizeSettings.from_config(cfg)
        self.method = build_method(cfg)
        self.pipeline, self.recorded = build_pipeline(self.settings, self.method)
        self.camera = self.settings.camera or "python-api"
        self._count = 0

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """(anonymized copy, report): faces found / anonymized / fallbacks, identities, audit."""
        from deid.faces.types import check_rgb_image

        image = check_rgb_image(image)
        pipeline = self.pipeline
        faces = pipeline.perception.faces(image)
        mask = pipeline.perception.person_mask(image)
        ids = pipeline.identities_for(self.camera, image, faces)
        result = pipeline.frames(
            image, faces, ids, mask, seed=pipeline.frame_seed(self.camera, self._count)
        )
        self._count += 1
        report: dict[str, Any] = {
            "method": self.method.name,
            "detector": self.recorded["detector"],
            "faces_found": len(faces),
            "anonymized": result.anonymized,
            "fallbacks": list(result.fallbacks),
            "method_fallbacks": list(result.method_fallbacks),
            "boxes": [list(face.box) for face in faces],
        }
        if ids is not None:
            report["identities"] = ids
        if pipeline.auditor is not None:
            report["audit"] = pipeline.audit(image, result.image, result, None).to_json()
        return result.image, report


def anonymize_image(
    image: np.ndarray, method: str = "blur", ckpt: str | Path | None = None, **options: Any
) -> tuple[np.ndarray, dict[str, Any]]:
    """One image: (anonymized copy, report). Builds the models each call: for many images
    make one `ImageAnonymizer` and call it."""
    return ImageAnonymizer(method, ckpt, **options)(image)


def anonymize_path(
    inputs: str | Path | list[str | Path],
    output: str | Path,
    method: str = "blur",
    ckpt: str | Path | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Images, videos and folders, exactly as `deid anonymize`; returns the run's summary."""
    from deid.anonymizers.runner import anonymize

    paths = [str(p) for p in inputs] if isinstance(inputs, list | tuple) else [str(inputs)]
    return anonymize(_config(method, ckpt, {"in": paths, "out": str(output), **options}))
