"""The trained methods the demo runs, each named by its configs only.

A method joins the demo with one `DemoMethod` line: its `conf/model/` name (what anonymize.py
and evaluate.py build from a checkpoint), the `conf/experiment/` that trains it on the demo
photos, and the folder under `outputs/demo/` its run goes to. The stages (`demo.stages`) train,
anonymize and evaluate every method listed here the same way; nothing else names a method.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DemoMethod:
    model: str  # conf/model/<model>.yaml: anonymize.py / evaluate.py model=<model> ckpt=...
    experiment: str  # conf/experiment/<experiment>.yaml: train.py experiment=<experiment>
    folder: str  # the training run folder, relative to the demo's output folder
    title: str  # how the report names it

    @property
    def checkpoint(self) -> Path:
        """The checkpoint the later stages use, relative to the demo's output folder."""
        return Path(self.folder) / "checkpoints" / "last.ckpt"


METHODS: tuple[DemoMethod, ...] = (
    DemoMethod("ciagan", "ciagan_demo", "training", "CIAGAN"),
    # The VQGAN stage joins here once vqgan/ has a demo experiment and a conf/model entry:
    # DemoMethod("vqgan", "vqgan_demo", "training_vqgan", "VQGAN full body"),
)
