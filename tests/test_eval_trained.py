"""Trained methods through the evaluation suite: tiny CIAGAN checkpoints (faces, and bodies with
`metrics=bodies`) scored by `evaluate()` under their experiment's name, and the identity network
of `ciagan_identity_pretrain` as the PNCA embedder (CIAGAN Table 2's PNCA column)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ciagan_tiny import TINY_GAN
from hydra import compose, initialize_config_dir

from ciagan.anonymizer import CiaganAnonymizer
from ciagan.embedder import PncaEmbedder
from deid.errors import DeidError
from deid.faces import build_detector
from deid.media import read_image
from deid.training import train
from deid_eval import paper_numbers
from deid_eval.suite import evaluate

ROOT = Path(__file__).resolve().parents[1]
TINY_IDENTITY = [
    "trainer=cpu",
    "datamodule.image_size=32",
    "datamodule.batch_size=2",
    "datamodule.num_workers=0",
    "module.identity.channels=[8,16,16]",
    "module.identity.hidden=32",
    "module.identity.embedding_dim=16",
]


def _compose(config: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name=config, overrides=overrides)


def _train(experiment: str, data_dir: Path, out: Path, *extra: str) -> Path:
    overrides = [
        f"experiment={experiment}",
        *extra,
        "logger=csv",
        "trainer.max_steps=3",
        f"paths.data_dir={data_dir}",
        f"paths.output_dir={out}",
    ]
    train(_compose("train", overrides))
    return out / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def checkpoints(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny checkpoint per experiment: faces, bodies (the demo photos' silhouettes) and
    the identity pre-training (on the CelebA-layout fixture)."""
    runs = tmp_path_factory.mktemp("trained")
    tiny = [*TINY_GAN, "callbacks.sample_grids.every_n_iterations=0"]
    return {
        "ciagan_demo": _train("ciagan_demo", tiny_data_dir, runs / "faces", *tiny),
        "ciagan_body_demo": _train(
            "ciagan_body_demo",
            tiny_data_dir,
            runs / "bodies",
            *tiny,
            "datamodule.preprocess.workers=1",
        ),
        "ciagan_identity_pretrain": _train(
            "ciagan_identity_pretrain", tiny_data_dir, runs / "pnca", *TINY_IDENTITY
        ),
    }


def _faces_cfg(tmp_path: Path, root: Path, *extra: str):
    return _compose(
        "evaluate",
        [
            "data=demo",
            f"data.root={root}",
            "k=1..3",
            "metrics.detectors=[{name: dlib_hog, upsample: 1, threshold: 0.0}]",
            "metrics.embedders=[dlib]",
            "metrics.kid=false",
            "metrics.samples=2",
            f"paths.cache_dir={tmp_path / 'cache'}",
            *extra,
        ],
    )


def test_a_trained_face_checkpoint_is_scored_under_its_experiment_name(
    checkpoints: dict[str, Path], tiny_data_dir: Path, tmp_path: Path
) -> None:
    ckpt = checkpoints["ciagan_demo"]
    cfg = _faces_cfg(tmp_path, tiny_data_dir / "demo", "model=ciagan", f"ckpt={ckpt}")
    results = evaluate(cfg, run_dir=tmp_path / "run")
    assert results["method"] == "ciagan_demo" and results["method_label"] == "ciagan_demo"
    assert results["dataset"]["images"] == 9 and results["dataset"]["split"] == "val"
    metrics = results["metrics"]
    assert 0.0 <= metrics["detection"]["dlib_hog"]["rate"] <= 1.0
    assert 0.0 <= metrics["reid"]["dlib"]["recall@1"] <= 1.0
    assert metrics["fid"]["value"] > 0.0  # the generated faces are not the originals
    assert json.loads((tmp_path / "run" / "results.json").read_text())["method"] == "ciagan_demo"
    assert "| ciagan_demo |" in (tmp_path / "run" / "tables.md").read_text()


def test_an_ablation_checkpoint_gets_its_own_paper_row(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    state = torch.load(checkpoints["ciagan_demo"], map_location="cpu", weights_only=True)
    state["deid_config"]["task_name"] = "ciagan_ablation_faces"
    renamed = tmp_path / "ablation.ckpt"
    torch.save(state, renamed)
    name = CiaganAnonymizer.from_checkpoint(renamed, device="cpu").name
    assert name == "ciagan_ablation_faces"
    assert paper_numbers.method_label(name) == "CIAGAN, full faces instead of landmarks"
    assert paper_numbers.method_label("ciagan_celeba") == "CIAGAN"


def test_a_trained_body_checkpoint_is_scored_by_the_bodies_suite(
    checkpoints: dict[str, Path], tiny_mots_root: Path, tmp_path: Path
) -> None:
    cfg = _compose(
        "evaluate",
        [
            "model=ciagan_body",
            f"ckpt={checkpoints['ciagan_body_demo']}",
            "data=mots",
            f"data.root={tiny_mots_root}",
            "metrics=bodies",
            "metrics.samples=2",
            "k=1..3",
            f"paths.cache_dir={tmp_path / 'cache'}",
        ],
    )
    results = evaluate(cfg, run_dir=tmp_path / "run")  # ResNet-50 absent: FID Inception, said
    assert results["method"] == "ciagan_body_demo" and results["suite"] == "bodies"
    section = results["metrics"]["silhouette_knn"]
    assert set(section["reid"]) == {"1", "2", "3"}
    assert all(0.0 <= v <= 1.0 for v in section["reid"].values())
    assert results["dataset"]["persons"] == 12


def test_pnca_embeds_demo_faces_with_the_pretrained_network(
    checkpoints: dict[str, Path], demo_root: Path
) -> None:
    embedder = PncaEmbedder.from_checkpoint(checkpoints["ciagan_identity_pretrain"])
    photos = [sorted((demo_root / "val" / n).glob("*.jpg"))[0] for n in ("madonna", "elton_john")]
    images = [read_image(p) for p in photos]
    detector = build_detector("dlib_hog")
    faces = [detector.detect(image)[0] for image in images]
    vectors = embedder.embed(images, faces)
    assert vectors.shape == (2, 16) and embedder.dim == 16
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(vectors[0], vectors[1])  # two people, two embeddings
    again = embedder.embed(images[:1], faces[:1])
    np.testing.assert_allclose(again[0], vectors[0], rtol=1e-5, atol=1e-6)  # batch-independent


def test_the_pnca_column_scores_the_demo_set(
    checkpoints: dict[str, Path], demo_root: Path, tmp_path: Path
) -> None:
    ckpt = checkpoints["ciagan_identity_pretrain"]
    cfg = _faces_cfg(
        tmp_path,
        demo_root,
        "model=blur9",
        "limit=15",
        "metrics.fid=false",
        "metrics.embedders=[dlib,pnca]",
        f"embedder.pnca.ckpt={ckpt}",
    )
    results = evaluate(cfg, run_dir=tmp_path / "run")
    reid = results["metrics"]["reid"]
    assert 0.0 <= reid["pnca"]["recall@1"] <= 1.0 and 0.0 < reid["pnca"]["chance"] < 1.0
    trained = results["protocol"]["trained_embedders"]["pnca"]
    assert trained["ckpt"] == str(ckpt) and len(trained["pnca checkpoint"]) == 64
    tables = (tmp_path / "run" / "tables.md").read_text()
    assert "PNCA = our Proxy-NCA identity network" in tables


def test_pnca_without_a_checkpoint_names_the_setting_and_the_command(tmp_path: Path) -> None:
    cfg = _faces_cfg(tmp_path, ROOT / "data" / "demo", "limit=3", "metrics.embedders=[pnca]")
    with pytest.raises(DeidError, match="embedder.pnca.ckpt="):
        evaluate(cfg, run_dir=tmp_path / "run")
    with pytest.raises(DeidError, match="experiment=ciagan_identity_pretrain"):
        PncaEmbedder.from_checkpoint(tmp_path / "missing.ckpt")
