"""Detectors by config name: `conf/detector/<name>.yaml`, and `a+b` for a union of them.

The same names work wherever a detector is chosen (`deid anonymize --detector`, `anonymize.py
detector=`, `python -m deid.faces detect --detector`), so a user learns them once.
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from deid.errors import DeidError, unknown_name
from deid.hydra_entry import CONF_DIR, known_names


def detector_names() -> list[str]:
    """The detector configs a user can name (`conf/detector/*.yaml`)."""
    return known_names("detector")


def named_detector_spec(name: str) -> dict[str, Any]:
    """The detector config of `name`, or of `a+b+...` as a union of those configs."""
    parts = [part.strip() for part in str(name).split("+")]
    specs = []
    for part in parts:
        path = CONF_DIR / "detector" / f"{part}.yaml"
        if not part or not path.is_file():
            raise unknown_name("face detector", part, detector_names())
        spec = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        assert isinstance(spec, dict)
        specs.append(spec)
    if len(specs) == 1:
        return specs[0]
    members: list[dict[str, Any]] = []
    for spec in specs:  # a part that is itself a union contributes its members
        members += [dict(m) for m in spec["members"]] if "members" in spec else [spec]
    return {"members": members}


def detector_spec(value: Any) -> dict[str, Any]:
    """A detector config (mapping, possibly `{name: a+b}`) as a spec `build_detector_spec` takes."""
    if isinstance(value, str):
        return named_detector_spec(value)
    spec = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    if not isinstance(spec, dict):
        raise DeidError(f"a detector is a name or a mapping, got {type(value).__name__}")
    name = spec.get("name")
    if isinstance(name, str) and "+" in name:
        return named_detector_spec(name)
    return dict(spec)


def detector_label(spec: dict[str, Any]) -> str:
    """`mediapipe+mtcnn` for a union (each model named once), the name for one detector."""
    if "members" in spec:
        return "+".join(dict.fromkeys(str(m.get("name")) for m in spec["members"]))
    return str(spec.get("name"))


def spec_names(spec: dict[str, Any]) -> set[str]:
    """The detector model names a spec uses (to pick an independent audit detector)."""
    if "members" in spec:
        return {str(m.get("name")) for m in spec["members"]}
    return {str(spec.get("name"))}
