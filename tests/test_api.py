"""The Python API as the README shows it: its example block runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from deid.media import write_image

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (ROOT / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "import deid" in b]
    write_image(tmp_path / "photos" / "astronaut.png", data.astronaut())
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["summary"]["counts"]["images"] == 1
    assert (tmp_path / "anonymized" / "astronaut.png").is_file()


def test_anonymize_image_changes_the_face_only() -> None:
    import deid

    image = data.astronaut()
    out, report = deid.anonymize_image(image)
    assert report["faces_found"] >= 1 and report["anonymized"] == report["faces_found"]
    x0, y0, x1, y1 = (int(v) for v in report["boxes"][0])
    assert np.abs(out[y0:y1, x0:x1].astype(int) - image[y0:y1, x0:x1]).mean() > 5
    np.testing.assert_array_equal(out[450:], image[450:])  # far below the face: untouched
