"""The thin Hydra entry points run, print their resolved config, and fail in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(
    ("script", "required", "expected_key"),
    [
        ("train.py", [], "trainer:"),
        ("evaluate.py", [], "metrics:"),
        ("anonymize.py", ["in=x.jpg", "out=y.jpg"], "detector:"),
    ],
)
def test_cfg_job_prints_resolved_config(
    script: str, required: list[str], expected_key: str
) -> None:
    result = _run(script, *required, "--cfg", "job", "--resolve")
    assert result.returncode == 0, result.stderr
    assert expected_key in result.stdout
    assert "${" not in result.stdout  # interpolations resolved


def test_anonymize_without_inputs_fails_in_one_line(tmp_path: Path) -> None:
    result = _run("anonymize.py", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error:")
    assert len(result.stderr.strip().splitlines()) == 1


def test_training_without_the_dataset_fails_in_one_line_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "celeba" / "img_align_celeba").mkdir(parents=True)
    result = _run(
        "train.py",
        "experiment=ciagan_demo",
        "data=celeba_ciagan",
        f"paths.data_dir={tmp_path}",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "identity_CelebA.txt" in result.stderr and "Traceback" not in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error:")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["experiment=no_such_name"],
        ["-m", "experiment=ciagan_demo,no_such_name"],
        [],  # no experiment: the base config names no method
    ],
)
def test_training_without_a_known_experiment_fails_in_one_line_listing_them(
    args: list[str], tmp_path: Path
) -> None:
    result = _run("train.py", *args, f"hydra.run.dir={tmp_path}", f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().startswith("error:") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "ciagan_demo, " in result.stderr and "ciagan_identity_pretrain" in result.stderr
    if args:
        assert "unknown experiment 'no_such_name'" in result.stderr
    assert not (tmp_path / "config.yaml").exists()  # refused before the run's config was written


@pytest.mark.parametrize("config_name", ["train", "evaluate", "anonymize"])
def test_root_configs_compose(config_name: str) -> None:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name=config_name)
    assert cfg.paths.data_dir.endswith("data")


@pytest.mark.parametrize("override", ["trainer=ddp", "trainer=gpu", "logger=wandb", "data=lfw"])
def test_config_groups_compose(override: str) -> None:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[override], return_hydra_config=True)
    group, choice = override.split("=")
    assert cfg.hydra.runtime.choices[group] == choice
    assert cfg[group], f"{override} composed an empty {group}"
