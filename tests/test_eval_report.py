"""Report: merged CSV, paper-style Markdown with paper numbers beside ours, plots, CLI, callback."""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf
from PIL import Image

from deid.errors import DeidError
from deid_eval import paper_numbers as paper
from deid_eval.report import (
    DETECTION_PLOT,
    REID_PLOT,
    MergeReportCallback,
    default_out_dir,
    load_results,
    main,
    render_tables,
    result_rows,
    write_report,
    write_run_outputs,
)

REPO = Path(__file__).resolve().parents[1]
DATASET = {"name": "demo", "split": "val", "root": "data/demo", "images": 25, "identities": 5}


def _reid(recall: list[float], link: float) -> dict[str, Any]:
    ks = {str(k): {"recall": r, "linkability": link} for k, r in enumerate(recall, start=1)}
    return {"recall@1": recall[0], "linkability@1": link, "chance": 0.2, "ks": ks}


def _face_run(method: str, dlib: float, mtcnn: float, casia: list[float], fid: float) -> dict:
    return {
        "method": method,
        "dataset": DATASET,
        "metrics": {
            "detection": {
                "dlib_hog": {"rate": dlib, "threshold": 0.0, "evaluated": 24},
                "mtcnn": {"rate": mtcnn, "threshold": 0.5, "evaluated": 24},
            },
            "reid": {"facenet_casia": _reid(casia, 0.04), "pnca": _reid([casia[0] / 2], 0.0)},
            "fid": {"value": fid, "samples": 25, "implementation": "pytorch-fid 0.3.0"},
            "kid": {"mean": 0.0123, "std": 0.002, "subsets": 100, "subset_size": 25},
        },
    }


RUNS: dict[str, dict[str, Any]] = {
    "original": _face_run("original", 1.0, 1.0, [0.64, 0.8, 0.9], 0.0),
    "blur9_px": _face_run("blur9_px", 0.875, 0.4, [0.572, 0.7, 0.8], 54.5),
    "pixel16": _face_run("pixel16", 0.0, 0.0, [0.2, 0.4, 0.6], 318.4),
    "blackbox": {
        "method": "blackbox",
        "method_label": "black box",
        "dataset": {"name": "supervisely", "split": "test", "images": 40},
        "metrics": {
            "silhouette_knn": {
                "backbone": "resnet50",
                "reid": {str(k): 0.9 + k / 100 for k in range(1, 11)},
                "deid_success": {str(k): 0.1 - k / 100 for k in range(1, 11)},
            }
        },
    },
    "ciagan_celeba": {
        "method": "ciagan_celeba",
        "dataset": {"name": "lfw", "split": "pairs", "images": 6000},
        "metrics": {
            "lfw": {
                "facenet_casia": {
                    "tar_mean": 0.021,
                    "tar_std": 0.007,
                    "far_mean": 0.001,
                    "accuracy_mean": 0.71,
                    "accuracy_std": 0.02,
                    "anonymized_face_misses": 3,
                }
            }
        },
    },
}


def _write_run(folder: Path, results: dict[str, Any]) -> Path:
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results), encoding="utf-8")
    return folder


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "multirun" / "evaluate" / "2025-01-01_00-00-00"
    for num, results in enumerate(RUNS.values()):
        _write_run(root / str(num), results)
    return root


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _assert_png(path: Path) -> None:
    assert path.is_file(), path
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width > 100 and image.height > 100


def test_paper_numbers_keyed_by_our_methods():
    assert paper.CIAGAN_TABLE2["blur9_px"] == {
        "dlib": 90.6,
        "ssh": 38.6,
        "pnca": 16.9,
        "facenet": 57.2,
    }
    assert paper.CIAGAN_TABLE1["ciagan_ablation_classifier"]["fid"] == 63.2
    assert paper.CIAGAN_TABLE3["original"]["casia"] == (0.965, 0.016)
    assert paper.CIAGAN_TABLE4_FID["blur17_px"] == 152.03
    assert all(len(row) == 10 for row in paper.VQGAN_TABLE1.values())
    assert paper.vqgan_table1_row("blur9_px") == paper.vqgan_table1_row("blur17")
    assert paper.vqgan_table1_row("vqgan")[0] == 35.8
    assert paper.vqgan_table1_row("pixel8") is None


def test_result_rows_long_format():
    rows = result_rows(RUNS["blur9_px"])
    index = {(r["metric"], r["variant"], r["k"]): r for r in rows}
    assert index[("detection_rate", "dlib_hog", None)]["value"] == 0.875
    assert index[("detection_threshold", "mtcnn", None)]["value"] == 0.5
    assert index[("reid_recall", "facenet_casia", 2)]["value"] == 0.7
    assert index[("reid_linkability", "facenet_casia", 1)]["value"] == 0.04
    assert index[("fid", "", None)]["value"] == 54.5
    assert index[("kid_mean", "", None)]["unit"] == "score"
    # recall@1 and ks["1"] are the same number: one row, not two
    assert sum(r["metric"] == "reid_recall" and r["k"] == 1 for r in rows) == 2
    assert {r["method"] for r in rows} == {"blur9_px"}
    assert {(r["dataset"], r["split"]) for r in rows} == {("demo", "val")}


def test_unknown_sections_are_kept_in_rows():
    rows = result_rows({"method": "x", "metrics": {"lpips": {"alex": {"mean": 0.3}}}})
    assert [(r["metric"], r["value"]) for r in rows] == [("lpips.alex.mean", 0.3)]


def test_load_results_accepts_runs_files_and_sweeps(sweep: Path):
    assert len(load_results([sweep])) == len(RUNS)
    one = load_results([sweep / "1", sweep / "1" / "results.json", sweep / "2" / "results.json"])
    assert [r["method"] for r in one] == ["blur9_px", "pixel16"]
    assert one[0]["_source"].endswith("results.json")


def test_merged_report(sweep: Path, tmp_path: Path):
    out = tmp_path / "report"
    written = write_report(load_results([sweep]), out)
    assert set(written) == {"results.csv", "tables.md", REID_PLOT, DETECTION_PLOT, "summary.json"}

    rows = _rows(out / "results.csv")
    assert list(rows[0]) == [
        "method",
        "dataset",
        "split",
        "metric",
        "variant",
        "k",
        "value",
        "unit",
    ]
    assert {r["method"] for r in rows} == set(RUNS)
    blur = {(r["metric"], r["variant"], r["k"]): r for r in rows if r["method"] == "blur9_px"}
    assert float(blur[("detection_rate", "dlib_hog", "")]["value"]) == 0.875
    assert float(blur[("reid_recall", "facenet_casia", "3")]["value"]) == 0.8
    knn = [r for r in rows if r["metric"] == "silhouette_reid"]
    assert len(knn) == 10 and {r["variant"] for r in knn} == {"resnet50"}
    lfw = {r["metric"]: r for r in rows if r["method"] == "ciagan_celeba"}
    assert float(lfw["lfw_tar"]["value"]) == 0.021 and lfw["lfw_tar"]["variant"] == "facenet_casia"

    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["rows"]) == len(rows)
    assert {r["method"] for r in summary["runs"]} == set(RUNS)

    text = (out / "tables.md").read_text()
    assert text == render_tables(load_results([sweep]))
    # Table 2: ours in percent, the paper's number beside it, what was really used said below
    assert "| blur9_px | 87.5 (paper 90.6) | 40.0 (paper 38.6) | 28.6 (paper 16.9) |" in text
    assert "57.2 (paper 57.2)" in text
    assert "| original | 100.0 (paper 100.0) |" in text
    assert "mtcnn at threshold 0.5" in text and "paper used SSH" in text
    assert "FaceNet = facenet_casia" in text
    assert "Dataset demo (val): 25 images, 5 identities" in text
    # FID row (supplement Table 4), KID beside it
    assert "54.50" in text and "318.43" in text and "12.30 ± 2.00" in text
    # Table 3 in the paper's own unit (fraction), paper beside ours
    assert "0.021 ± 0.007 (paper 0.019 ± 0.008)" in text
    assert "MTCNN missed (original box reused): ciagan_celeba 3" in text
    # VQGAN Table I: ours for k=1..10, then the paper's row
    assert "| black box | 91.0 | 92.0 |" in text and "| ↳ paper | 99.2 | 99.3 |" in text
    assert "## supervisely (test)" in text and "## lfw (pairs)" in text
    # tables without data are left out: no CIAGAN ablation run, no blur method with k-NN
    assert "Table 1" not in text and "face blurring" not in text
    lfw_section = text.split("## lfw (pairs)")[1]
    assert "Table 2" not in lfw_section and "Table 4" not in lfw_section

    for name in (REID_PLOT, DETECTION_PLOT):
        _assert_png(out / name)


def test_blur_gets_vqgan_face_blurring_row_with_footnote():
    blur = {
        "method": "blur17",
        "dataset": {"name": "supervisely", "split": "test"},
        "metrics": {"silhouette_knn": {"backbone": "resnet50", "reid": {"1": 0.99, "2": 1.0}}},
    }
    text = render_tables([blur])
    assert "| blur17 | 99.0 | 100.0 |" in text
    assert "| ↳ paper¹ | 99.8 | 99.8 |" in text
    assert "'face blurring' row states no kernel size; it is shown beside blur17." in text


def test_ciagan_ablation_table():
    run = _face_run("ciagan_ablation_classifier", 0.5, 0.5, [0.1], 60.0)
    text = render_tables([run])
    assert "CIAGAN Table 1" in text
    assert "| CIAGAN" not in text  # rows are labelled by our method names
    assert (
        "| ciagan_ablation_classifier | 50.0 (paper 64.6) | 5.0 (paper 0.4) | 60.0 (paper 63.2) |"
        in text
    )
    assert "detection = dlib_hog, Recall@1 = pnca" in text


def test_write_run_outputs(tmp_path: Path):
    run_dir = _write_run(tmp_path / "run", RUNS["pixel16"])
    written = write_run_outputs(run_dir, RUNS["pixel16"])
    assert {"results.csv", "tables.md", REID_PLOT, DETECTION_PLOT} <= set(written)
    assert "| pixel16 | 0.0 (paper 0.0) |" in (run_dir / "tables.md").read_text()
    assert {r["method"] for r in _rows(run_dir / "results.csv")} == {"pixel16"}
    _assert_png(run_dir / DETECTION_PLOT)
    # a run without the data for a plot removes a stale one
    only_lfw = write_run_outputs(run_dir, RUNS["ciagan_celeba"])
    assert DETECTION_PLOT not in only_lfw and not (run_dir / DETECTION_PLOT).exists()


def test_cli_writes_report_into_common_folder(sweep: Path, capsys: pytest.CaptureFixture[str]):
    assert main([str(sweep / "0"), str(sweep / "1")]) == 0
    out = capsys.readouterr().out
    assert "57.2 (paper 57.2)" in out and f"in {sweep}" in out
    assert (sweep / "tables.md").is_file() and (sweep / DETECTION_PLOT).is_file()
    assert default_out_dir([sweep / "0" / "results.json"]) == (sweep / "0").resolve()


def test_cli_missing_folder_is_one_line_exit_2(tmp_path: Path):
    missing = tmp_path / "nope"
    proc = subprocess.run(
        [sys.executable, "-m", "deid_eval.report", str(missing)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {missing}: no such file or folder"]
    assert "Traceback" not in proc.stderr


def test_folder_without_results_is_a_clear_error(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DeidError, match=r"empty: no results\.json found"):
        load_results([tmp_path / "empty"])


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ('{"method": "blur9", ', r"not valid JSON \(.*line 1\)"),
        ("[1, 2]", "top level is not a JSON object"),
        ('{"metrics": {}}', "no 'method' name"),
        ('{"method": "x", "metrics": {"fid": 3}}', r"metrics\.fid is not an object"),
    ],
)
def test_malformed_results_is_one_clear_line(tmp_path: Path, content: str, reason: str):
    path = tmp_path / "run" / "results.json"
    path.parent.mkdir()
    path.write_text(content)
    with pytest.raises(DeidError, match=reason) as info:
        load_results([path.parent])
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message


def test_callback_writes_merged_report_into_sweep(sweep: Path):
    config = OmegaConf.create(
        {"hydra": {"sweep": {"dir": str(sweep), "subdir": "${hydra.job.num}"}}}
    )
    MergeReportCallback().on_multirun_end(config)
    assert "57.2 (paper 57.2)" in (sweep / "tables.md").read_text()
    assert len(json.loads((sweep / "summary.json").read_text())["runs"]) == len(RUNS)
    _assert_png(sweep / REID_PLOT)


def test_callback_never_crashes_the_sweep(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "no_runs")}}})
    with caplog.at_level(logging.WARNING, logger="deid_eval.report"):
        MergeReportCallback().on_multirun_end(config)
    assert "merged report not written" in caplog.text
    bad = _write_run(tmp_path / "bad" / "0", {"method": "x"})
    (bad / "results.json").write_text("{")
    MergeReportCallback().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(bad)}}}))
    assert "not valid JSON" in caplog.text


def test_extra_detection_thresholds_become_variants() -> None:
    from deid_eval.report import result_rows

    results = {
        "method": "blur9",
        "dataset": {"name": "demo", "split": "val"},
        "metrics": {
            "detection": {
                "mtcnn": {
                    "rate": 0.9,
                    "threshold": 0.5,
                    "evaluated": 20,
                    "by_threshold": {
                        "0.5": {"rate": 0.9, "evaluated": 20},
                        "0.7": {"rate": 0.8, "evaluated": 19},
                    },
                }
            }
        },
    }
    rates = {
        r["variant"]: r["value"] for r in result_rows(results) if r["metric"] == "detection_rate"
    }
    assert rates == {"mtcnn": 0.9, "mtcnn@0.7": 0.8}


def test_aligned_and_whole_photo_runs_get_separate_tables(tmp_path: Path) -> None:
    from deid_eval.report import render_tables

    def run(align: str) -> dict:
        return {
            "method": "blur9",
            "dataset": {"name": "demo", "split": "val", "images": 25, "identities": 5},
            "protocol": {"align": align},
            "metrics": {"detection": {"dlib_hog": {"rate": 0.5, "threshold": 0.0}}},
        }

    text = render_tables([run("none"), run("ciagan")])
    assert "Dataset demo (val):" in text and "Dataset demo (val, ciagan crops):" in text
