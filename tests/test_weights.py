"""The offline model zoo: resolution order, checksums, clear errors, opt-in downloads."""

from __future__ import annotations

import hashlib
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deid import weights
from deid.errors import MissingWeightError, WeightChecksumError


@pytest.fixture()
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh $DEID_HOME and $TORCH_HOME so user-supplied weights are surely absent."""
    monkeypatch.setenv("DEID_HOME", str(tmp_path / "deid"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("DEID_ALLOW_DOWNLOAD", raising=False)
    return tmp_path


def _register(monkeypatch: pytest.MonkeyPatch, spec: weights.WeightSpec) -> None:
    registry = dict(weights.REGISTRY)
    registry[spec.name] = spec
    monkeypatch.setattr(weights, "REGISTRY", registry)


def _tensor_file(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"w": torch.arange(6.0).reshape(2, 3)}, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_registry_has_every_required_entry() -> None:
    required = {
        "dlib_hog", "dlib_cnn_face", "dlib_landmarks68", "dlib_face_descriptor", "mtcnn",
        "facenet_casia", "facenet_vggface2", "fid_inception", "resnet50_imagenet", "deeplabv3",
        "mediapipe_face_short", "mediapipe_face_full", "mediapipe_selfie",
    }  # fmt: skip
    assert required <= set(weights.REGISTRY)


@pytest.mark.parametrize(
    "name",
    ["dlib_cnn_face", "dlib_landmarks68", "dlib_face_descriptor", "mtcnn", "mediapipe_selfie"],
)
def test_package_weights_resolve_offline_with_pinned_sha(name: str) -> None:
    path = weights.resolve(name, allow_download=False)
    assert path.is_file()
    assert weights.sha256_of(path) == weights.REGISTRY[name].sha256


def test_missing_user_weight_names_file_place_and_sha(isolated_home: Path) -> None:
    with pytest.raises(MissingWeightError) as err:
        weights.resolve("resnet50_imagenet")
    message = str(err.value)
    assert "resnet50_imagenet" in message
    assert "resnet50-0676ba61.pth" in message
    assert str(isolated_home / "deid" / "weights") in message
    assert "0676ba61" in message
    assert "DEID_WEIGHT_RESNET50_IMAGENET" in message


def test_unknown_weight_lists_known_names() -> None:
    with pytest.raises(MissingWeightError, match="dlib_landmarks68"):
        weights.resolve("no_such_weight")


def test_cache_then_user_path_order(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user_file = isolated_home / "elsewhere" / "w.pt"
    sha = _tensor_file(user_file)
    spec = weights.WeightSpec(name="toy", description="toy", filename="w.pt", sha256=sha)
    _register(monkeypatch, spec)
    monkeypatch.setenv("DEID_WEIGHT_TOY", str(user_file))
    assert weights.resolve("toy") == user_file
    cached = weights.cache_dir() / "w.pt"
    _tensor_file(cached)
    assert weights.resolve("toy") == cached  # the cache comes before a user-given path


def test_wrong_checksum_is_refused(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = isolated_home / "torch" / "hub" / "checkpoints" / "resnet50-0676ba61.pth"
    _tensor_file(fake)
    with pytest.raises(WeightChecksumError, match="resnet50-0676ba61.pth"):
        weights.resolve("resnet50_imagenet")


def test_download_only_when_opted_in(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served = isolated_home / "server" / "w.pt"
    sha = _tensor_file(served)
    spec = weights.WeightSpec(
        name="toy", description="toy", filename="w.pt", sha256=sha, url=served.as_uri()
    )
    _register(monkeypatch, spec)
    with pytest.raises(MissingWeightError):
        weights.resolve("toy")
    assert not (weights.cache_dir() / "w.pt").exists()
    path = weights.resolve("toy", allow_download=True)
    assert path == weights.cache_dir() / "w.pt"
    assert weights.sha256_of(path) == sha


def test_download_with_bad_checksum_leaves_nothing(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = isolated_home / "server" / "w.pt"
    _tensor_file(served)
    spec = weights.WeightSpec(
        name="toy", description="toy", filename="w.pt", sha256="0" * 64, url=served.as_uri()
    )
    _register(monkeypatch, spec)
    with pytest.raises(WeightChecksumError):
        weights.resolve("toy", allow_download=True)
    assert list(weights.cache_dir().iterdir()) == []


class _Payload:
    def __reduce__(self):  # pragma: no cover - must never run
        return (print, ("code ran while loading a checkpoint",))


def test_load_state_dict_refuses_pickled_code(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    evil = isolated_home / "evil.pt"
    torch.save({"w": torch.zeros(1), "x": _Payload()}, evil)
    spec = weights.WeightSpec(name="toy", description="toy", filename="evil.pt")
    _register(monkeypatch, spec)
    monkeypatch.setenv("DEID_WEIGHT_TOY", str(evil))
    with pytest.raises(pickle.UnpicklingError):
        weights.load_state_dict("toy")


def _cli(*args: str, env_home: Path) -> subprocess.CompletedProcess[str]:
    env = {"DEID_HOME": str(env_home / "deid"), "TORCH_HOME": str(env_home / "torch")}
    import os

    return subprocess.run(
        [sys.executable, "-m", "deid.weights", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
    )


def test_list_cli_shows_every_entry_and_where_missing_ones_go(isolated_home: Path) -> None:
    result = _cli("list", env_home=isolated_home)
    assert result.returncode == 0, result.stderr
    for name in weights.REGISTRY:
        assert name in result.stdout
    assert "missing" in result.stdout
    assert str(isolated_home / "deid" / "weights" / "20180402-114759-vggface2.pt") in result.stdout


def test_verify_cli_checks_package_files(isolated_home: Path) -> None:
    result = _cli("verify", "dlib_landmarks68", "mtcnn", env_home=isolated_home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "fbdc2cb80eb9aa7a" in result.stdout
    missing = _cli("verify", "deeplabv3", env_home=isolated_home)
    assert missing.returncode == 1
    assert "deeplabv3" in missing.stdout
