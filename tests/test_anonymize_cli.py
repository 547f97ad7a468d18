"""`deid anonymize` and `anonymize.py` as a user meets them: every detector by name (and unions),
an audit that catches faces the anonymizing detector missed, one fake identity per person across
photos, help that lists the choices, and errors in the syntax the user typed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from deid.anonymizers.base import NEEDS_FACES
from deid.anonymizers.baselines import blackbox
from deid.anonymizers.cli import compose_config, parser
from deid.anonymizers.runner import IncompleteAnonymizationError, anonymize
from deid.errors import DeidError
from deid.faces.detectors.named import detector_names
from deid.hydra_entry import CONF_DIR
from deid.media import read_image, write_image
from demo.scenes import group_photo

ROOT = Path(__file__).resolve().parents[1]
KEY = "a1" * 16


@pytest.fixture(scope="module")
def group(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's group photo: three real faces of ~120 px."""
    return write_image(tmp_path_factory.mktemp("group") / "group.png", group_photo(demo_root))


def _run(args: list[str], **inject) -> dict:
    return anonymize(compose_config(parser().parse_args([*args, "--no-progress"])), **inject)


def _changed(before: np.ndarray, after: np.ndarray) -> float:
    return float((np.abs(after.astype(int) - before).max(axis=2) > 8).mean())


@pytest.mark.parametrize("name", [*detector_names(), "dlib_hog+mtcnn"])
def test_every_detector_works_by_name_in_both_interfaces(
    name: str, group: Path, tmp_path: Path
) -> None:
    image = read_image(group)
    summary = _run([str(group), "-o", str(tmp_path / "cli.png"), "--detector", name])
    expected = 2 if name == "mediapipe_short" else 3  # the selfie-range model misses one
    assert summary["counts"]["faces_found"] == expected, summary["detector"]
    assert summary["counts"]["anonymized"] == expected
    assert _changed(image, read_image(tmp_path / "cli.png")) > 0.03

    detector = (
        ["detector=default", f"detector.name={name}"] if "+" in name else [f"detector={name}"]
    )
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("anonymize", [f"in={group}", f"out={tmp_path / 'hydra.png'}", *detector])
    cfg.progress = False
    hydra = anonymize(cfg)
    assert hydra["counts"]["faces_found"] == expected


def test_strict_audit_fails_when_the_detector_misses_a_face(group: Path, tmp_path: Path) -> None:
    args = [str(group), "-o", str(tmp_path / "o"), "--detector", "mediapipe_short"]
    with pytest.raises(IncompleteAnonymizationError, match="1 faces not anonymized") as err:
        _run([*args, "--audit", "--strict"])
    assert err.value.exit_code == 3
    summary = json.loads((tmp_path / "o" / "anonymize_summary.json").read_text())
    counts = summary["counts"]
    assert summary["audit_detector"] == "mtcnn"  # independent of mediapipe
    assert (counts["audit_found"], counts["audit_covered"], counts["audit_missed"]) == (3, 2, 1)
    assert counts["audit_still_matching"] == 1  # the missed face is untouched
    (missed,) = summary["files"][0]["audit"]["missed_faces"]
    assert missed["coverage"] < 0.5

    # the defaults cover the photo: nothing missed, nothing still matching
    clean = _run([str(group), "-o", str(tmp_path / "d"), "--audit", "--strict"])
    assert clean["counts"]["audit_missed"] == clean["counts"]["audit_still_matching"] == 0
    assert clean["counts"]["audit_found"] == clean["counts"]["audit_covered"] == 3


class KeyedBlackBox:
    """A black box with identity control: records the identity each face was given."""

    name, num_identities, needs = "keyed", 1000, frozenset({NEEDS_FACES})

    def __init__(self) -> None:
        self.inner = blackbox()
        self.given: list[tuple[list, list[int]]] = []

    def anonymize(self, subjects, seeds=None):
        self.given += [(s.faces, s.identities) for s in subjects]
        return self.inner.anonymize(subjects, seeds)


def test_one_person_keeps_one_fake_identity_across_the_photos_of_a_folder(
    demo_root: Path, tmp_path: Path
) -> None:
    """Madonna in the group photo and in her portrait cut from it get one identity; so do
    Elton John and his; the three people get three."""
    photo = group_photo(demo_root, height=300)
    folder = tmp_path / "photos"
    write_image(folder / "a_group.png", photo)
    width = photo.shape[1]
    write_image(folder / "b_madonna.png", photo[:, : width // 3 - 8])
    write_image(folder / "c_elton.png", photo[:, width // 3 + 4 : 2 * width // 3 - 4])
    method = KeyedBlackBox()
    summary = _run([str(folder), "-o", str(tmp_path / "out"), "--key", KEY], anonymizer=method)
    (group_faces, group_ids), (_, (madonna,)), (_, (elton,)) = method.given
    by_x = [i for _, i in sorted(zip([f.center[0] for f in group_faces], group_ids, strict=True))]
    assert by_x[0] == madonna and by_x[1] == elton and len(set(by_x)) == 3
    assert summary["identities"]["camera"].startswith("each video's path; each photo folder")

    separate = KeyedBlackBox()
    _run(
        [str(folder), "-o", str(tmp_path / "sep"), "--key", KEY, "--set", "link_photos=false"],
        anonymizer=separate,
    )
    assert [ids for _, ids in separate.given][1:] != [[madonna], [elton]]


def test_help_lists_methods_and_detectors() -> None:
    text = parser().format_help()
    for name in ("blur", "blur9_px", "pixel8", "ciagan", "mediapipe", "mtcnn", "dlib_cnn"):
        assert name in text
    assert "env:VARIABLE" in text


def test_errors_speak_the_interface_the_user_typed(group: Path, tmp_path: Path) -> None:
    with pytest.raises(DeidError, match="add --ckpt <run>"):
        _run([str(group), "-o", str(tmp_path / "x"), "--anonymizer", "ciagan"])
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("anonymize", [f"in={group}", f"out={tmp_path / 'y'}", "model=ciagan"])
    with pytest.raises(DeidError, match=r"add ckpt=<run>"):
        anonymize(cfg)
    with pytest.raises(DeidError, match="unknown method --anonymizer nope; known: .*blur"):
        _run([str(group), "--anonymizer", "nope"])


def test_a_mistyped_override_never_echoes_its_value(group: Path, tmp_path: Path) -> None:
    secret = "feedface" * 4
    for command in (
        [sys.executable, "anonymize.py", f"in={group}", f"out={tmp_path}", f"kye={secret}"],
        [sys.executable, "-m", "deid.cli", "anonymize", str(group), "--set", f"kye={secret}"],
    ):
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
        assert proc.returncode == 2
        assert secret not in proc.stdout + proc.stderr
        assert "kye" in proc.stderr and "Traceback" not in proc.stderr


def test_faces_detect_has_a_default_detector(group: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "deid.faces", "detect", str(group), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (entry,) = json.loads(proc.stdout)["images"]
    assert len(entry["faces"]) == 3
