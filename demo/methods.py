"""The trained methods the demo runs, each named by its configs only.

A method joins the demo with one `DemoMethod` entry: its `conf/model/` name (what anonymize.py
and evaluate.py build from a checkpoint), the `conf/experiment/`s that train it on the demo
photos (in order; later stages may take an earlier stage's checkpoint through an override),
what it replaces (faces or whole bodies) and the evaluation suite that scores it. The stages
(`demo.stages`) train, anonymize and evaluate every method listed here the same way; nothing
else names a method.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DemoMethod:
    model: str  # conf/model/<model>.yaml: anonymize.py / evaluate.py model=<model> ckpt=...
    experiments: tuple[str, ...]  # train.py experiment=<e>, in order; the last one is the model
    title: str  # how the report names it
    # (override key, the earlier experiment whose last.ckpt it takes): the last stage's inputs
    stage_inputs: tuple[tuple[str, str], ...] = ()
    target: str = "face"  # anonymize.py target=
    suite: str = "faces"  # the evaluation suite that scores it (demo.stages.SUITES)
    anonymize_overrides: tuple[str, ...] = ()  # extra anonymize.py overrides for the demo

    @staticmethod
    def folder(experiment: str) -> Path:
        """A training run's folder, relative to the demo's output folder."""
        return Path("training") / experiment

    @property
    def checkpoint(self) -> Path:
        """The checkpoint the later stages use, relative to the demo's output folder."""
        return self.folder(self.experiments[-1]) / "checkpoints" / "last.ckpt"


METHODS: tuple[DemoMethod, ...] = (
    DemoMethod("ciagan", ("ciagan_demo",), "CIAGAN"),
    DemoMethod(
        "vqgan",
        ("vqgan_demo_first", "vqgan_demo_cond", "vqgan_demo_transformer"),
        "VQGAN full body",
        stage_inputs=(
            ("module.first_stage", "vqgan_demo_first"),
            ("module.cond_stage", "vqgan_demo_cond"),
        ),
        target="body",
        suite="bodies",
        # the anonymize command's detector and tracker already give the faces to blur; the
        # paper's extra dlib CNN pass (~2 s per frame here) is left to real runs
        anonymize_overrides=("model.face_detector=null",),
    ),
)
