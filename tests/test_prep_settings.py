"""Training's preprocess-on-first-use and the standalone `python -m deid.prep.faces|bodies` share
their settings (conf/prep/*.yaml): the same folder, the same settings.json, so either resumes
what the other made."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from deid.prep import bodies, faces

ROOT = Path(__file__).resolve().parents[1]
CASES = [  # experiment, standalone config, the settings.json record of a config
    ("ciagan_demo", "preprocess", faces.settings_record),
    ("ciagan_celeba", "preprocess", faces.settings_record),
    ("ciagan_body_demo", "preprocess_bodies", lambda cfg: bodies.settings_record(cfg, True)),
    ("ciagan_body_mots", "preprocess_bodies", lambda cfg: bodies.settings_record(cfg, False)),
]


def _compose(config: str, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name=config, overrides=overrides, return_hydra_config=True)


def _train_and_standalone(experiment: str, config: str, data_dir: Path) -> tuple[DictConfig, ...]:
    train = _compose("train", [f"experiment={experiment}", f"paths.data_dir={data_dir}"])
    data = train.hydra.runtime.choices.data
    standalone = _compose(config, [f"data={data}", f"paths.data_dir={data_dir}"])
    return train, standalone


@pytest.mark.parametrize(("experiment", "config", "record"), CASES)
def test_training_composes_the_standalone_settings(
    experiment: str, config: str, record, tmp_path: Path
) -> None:
    train, standalone = _train_and_standalone(experiment, config, tmp_path)
    triggered = OmegaConf.create(
        {
            **OmegaConf.to_container(train.datamodule.preprocess, resolve=True),
            "out": train.datamodule.manifest_dir,
        }
    )
    assert triggered.out == standalone.out  # one folder
    assert record(triggered) == record(standalone)  # one settings.json
    assert triggered.get("detect_max_side") == standalone.get("detect_max_side")


def test_the_standalone_command_resumes_what_training_made(
    tiny_data_dir: Path, tmp_path: Path
) -> None:
    shutil.copytree(tiny_data_dir / "demo", tmp_path / "demo")
    train, standalone = _train_and_standalone("ciagan_demo", "preprocess", tmp_path)
    datamodule = instantiate(train.datamodule, _convert_="all")
    datamodule.prepare_data()  # no manifest yet: training preprocesses the photos itself
    made = Path(train.datamodule.manifest_dir)
    assert (made / "manifest.csv").is_file()
    summary = faces.preprocess(standalone)  # refused if the settings differed
    assert summary["out"] == str(made) and summary["done"] == 0
    assert summary["skipped_already_done"] == summary["images"] > 0
