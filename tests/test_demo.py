"""`make demo`'s perception stage on the real sample images (slow: ~45 s on 2 cores)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from demo import perception as demo


@pytest.mark.slow
def test_perception_stage_writes_picture_and_json(demo_root: Path, tmp_path: Path) -> None:
    result = demo.run_perception(demo_root, tmp_path)
    assert (tmp_path / "perception.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "perception.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert len(saved["images"]) == 6
    for record in saved["images"]:
        assert record["faces"]["dlib_hog"], record["source"]
        assert record["person_mask_fraction"] > 0.05
    for name in demo.EMBEDDERS:
        stats = saved["identity"][name]
        assert stats["mean_sq_distance_same_identity"] < stats["mean_sq_distance_other_identity"]
        assert stats["leave_one_out_1nn_accuracy"] >= 0.8
