"""evaluate.py's face suite end to end on the real demo photos with real models.

Invariants (architecture.md practice 8): the `original` anonymizer keeps every face detectable
and gives the clean Recall@1 (computed here independently), pixel16 drops to near chance, a
second model reuses the cached originals, and user mistakes stop with one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from deid.datasets.image_folder import read_demo
from deid.faces import build_detector, build_embedder, center_weighted_face
from deid.media import read_image
from deid_eval.suite import evaluate

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 15  # the first 15 validation photos: 3 identities


def _cfg(tmp_path: Path, model: str, *extra: str):
    overrides = [
        f"model={model}",
        "data=demo",
        f"data.root={ROOT / 'data' / 'demo'}",
        f"limit={LIMIT}",
        "k=1..3",
        "metrics.detectors=[{name: dlib_hog, upsample: 1, thresholds: [0.0, 0.5]}]",
        "metrics.embedders=[dlib]",
        "metrics.samples=4",
        f"paths.cache_dir={tmp_path / 'cache'}",
        *extra,
    ]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="evaluate", overrides=overrides)


def _clean_recall_at_1() -> float:
    """Recall@1 of the untouched originals, computed without the suite (brute force)."""
    records = read_demo(ROOT / "data" / "demo", split="val")[:LIMIT]
    detector, embedder = build_detector("dlib_hog"), build_embedder("dlib")
    images, faces, labels = [], [], []
    for record in records:
        image = read_image(record.path)
        face = center_weighted_face(detector.detect(image), image.shape)
        if face is not None:
            images.append(image)
            faces.append(face)
            labels.append(record.identity)
    vectors = embedder.embed(images, faces)
    distances = ((vectors[:, None] - vectors[None]) ** 2).sum(-1)
    np.fill_diagonal(distances, np.inf)
    nearest = distances.argmin(axis=1)
    return float(np.mean([labels[j] == labels[i] for i, j in enumerate(nearest)]))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("suite")
    results = {}
    for model in ("original", "pixel16"):
        results[model] = evaluate(_cfg(tmp, model), run_dir=tmp / model)
        results[model]["_dir"] = tmp / model
    return results


def test_original_keeps_faces_and_gives_the_clean_recall(runs: dict[str, dict]) -> None:
    metrics = runs["original"]["metrics"]
    assert metrics["detection"]["dlib_hog"]["rate"] == 1.0
    assert metrics["reid"]["dlib"]["recall@1"] == pytest.approx(_clean_recall_at_1())
    assert metrics["reid"]["dlib"]["linkability@1"] == 1.0
    assert metrics["fid"]["value"] == pytest.approx(0.0, abs=1e-3)


def test_detection_at_several_thresholds_from_one_pass(runs: dict[str, dict]) -> None:
    for model in ("original", "pixel16"):
        entry = runs[model]["metrics"]["detection"]["dlib_hog"]
        low, high = entry["by_threshold"]["0.0"], entry["by_threshold"]["0.5"]
        assert entry["threshold"] == 0.0 and entry["rate"] == low["rate"]
        assert high["evaluated"] <= low["evaluated"]  # fewer originals found at 0.5
    assert (
        runs["original"]["metrics"]["detection"]["dlib_hog"]["by_threshold"]["0.5"]["rate"] == 1.0
    )


def test_pixel16_hides_identity_and_faces(runs: dict[str, dict]) -> None:
    metrics = runs["pixel16"]["metrics"]
    assert metrics["detection"]["dlib_hog"]["rate"] <= 0.3
    reid = metrics["reid"]["dlib"]
    assert reid["recall@1"] < runs["original"]["metrics"]["reid"]["dlib"]["recall@1"]
    assert reid["linkability@1"] <= 0.5
    assert metrics["fid"]["value"] > 10
    assert [int(k) for k in reid["ks"]] == [1, 2, 3]


def test_second_model_reuses_the_cached_originals(runs: dict[str, dict]) -> None:
    assert runs["original"]["cache"]["hits"] == []
    assert {"faces", "embeddings", "fid_features"} <= set(runs["pixel16"]["cache"]["hits"])


def test_run_folder_has_every_result_file(runs: dict[str, dict]) -> None:
    run_dir = runs["pixel16"]["_dir"]
    for name in ("results.json", "results.csv", "tables.md", "samples.png"):
        assert (run_dir / name).stat().st_size > 0, name
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["dataset"]["evaluated"] == runs["pixel16"]["dataset"]["evaluated"]
    assert saved["weights"]["dlib_face_descriptor"].startswith("55533b28")
    assert "torch" in saved["software"] and saved["protocol"]["ks"] == [1, 2, 3]


def _evaluate_cli(
    *overrides: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "evaluate.py", *overrides],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_dataset_root_without_images_stops_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = _evaluate_cli(
        "data=image_folder", f"data.root={tmp_path / 'empty'}", f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error:")
    assert "no images" in result.stderr


def test_missing_weight_stops_in_one_line(tmp_path: Path) -> None:
    result = _evaluate_cli(
        "metrics.embedders=[facenet_vggface2]",
        "limit=2",
        f"hydra.run.dir={tmp_path / 'run'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        env={"DEID_HOME": str(tmp_path / "home"), "TORCH_HOME": str(tmp_path / "torch")},
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "facenet_vggface2" in last


def test_bad_k_range_stops_in_one_line(tmp_path: Path) -> None:
    result = _evaluate_cli("k=ten", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert "k='ten'" in result.stderr.strip().splitlines()[-1]


def test_multirun_over_models_merges_one_table(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = _evaluate_cli(
        "-m",
        "model=original,pixel16",
        "data=demo",
        "limit=6",
        "metrics.detectors=[{name: dlib_hog, upsample: 1, threshold: 0.0}]",
        "metrics.embedders=[dlib]",
        "metrics.fid=false",
        "metrics.kid=false",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for job in ("0", "1"):
        assert (sweep / job / "results.json").is_file()
    tables = (sweep / "tables.md").read_text()
    assert "original" in tables and "pixelization 16x16" in tables
    assert (sweep / "results.csv").read_text().count("\n") > 4


def test_aligned_crops_score_the_ciagan_crop(tmp_path: Path) -> None:
    cfg = _cfg(
        tmp_path, "original", "metrics.align=ciagan", "metrics.fid=false", "metrics.kid=false"
    )
    results = evaluate(cfg, run_dir=tmp_path / "aligned")
    assert results["protocol"]["align"] == "ciagan"
    reid = results["metrics"]["reid"]["dlib"]
    assert reid["linkability@1"] == 1.0
    assert results["metrics"]["detection"]["dlib_hog"]["by_threshold"]["0.5"]["rate"] == 1.0
    faces_cached = set(
        results["cache"]["hits"]
    )  # the photos' detections are shared with align=none
    assert "embeddings" in set(results["cache"]["computed"]) and "faces" in faces_cached | set(
        results["cache"]["computed"]
    )


def test_unknown_align_mode_is_one_clear_error(tmp_path: Path) -> None:
    from deid.errors import DeidError

    with pytest.raises(DeidError, match="metrics.align='tight'"):
        evaluate(
            _cfg(tmp_path, "original", "metrics.align=tight", "limit=2"), run_dir=tmp_path / "x"
        )
