"""`python -m deid.faces detect`: JSON schema, readable table, and one-line errors for bad files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deid.faces", "detect", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _lines(stream: str) -> list[str]:
    """Lines of a stream that may also carry tqdm's carriage-return progress bar."""
    return [line.strip() for line in re.split(r"[\r\n]", stream) if line.strip()]


@pytest.fixture(scope="module")
def images(astronaut: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cli")
    paths = {name: folder / name for name in ("astronaut.png", "small.jpg", "good.jpg")}
    Image.fromarray(astronaut).save(paths["astronaut.png"])
    Image.fromarray(np.ascontiguousarray(astronaut[:256, 64:320])).save(paths["small.jpg"])
    Image.fromarray(astronaut).save(paths["good.jpg"], quality=90)
    data = paths["good.jpg"].read_bytes()
    bad = {
        "missing.jpg": None,
        "empty.jpg": b"",
        "truncated.jpg": data[: len(data) // 3],
        "text.jpg": b"this is a text file, renamed\n",
    }
    for name, content in bad.items():
        if content is not None:
            (folder / name).write_bytes(content)
        paths[name] = folder / name
    return paths


def test_json_schema_with_landmarks(images: dict[str, Path]) -> None:
    result = _run(
        str(images["astronaut.png"]), str(images["small.jpg"]),
        "--detector", "dlib_hog", "--threshold", "0.5", "--json", "--landmarks",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [entry["path"] for entry in data["images"]] == [
        str(images["astronaut.png"]),
        str(images["small.jpg"]),
    ]
    assert data["errors"] == []
    for entry in data["images"]:
        assert set(entry) == {"path", "faces"}
        assert len(entry["faces"]) == 1
        face = entry["faces"][0]
        assert set(face) == {"box", "score", "landmarks"}
        assert len(face["box"]) == 4 and isinstance(face["score"], float)
        assert np.asarray(face["landmarks"]).shape == (68, 2)
    # boxes are in each image's own pixels: the 256 px crop starts 64 px further right (HOG's
    # window grid moves with the crop, and the crop is a JPEG: measured 5 px apart)
    big, small = (entry["faces"][0]["box"] for entry in data["images"])
    assert big[:2] == [175.0, 76.0]
    assert abs(small[0] - (big[0] - 64)) <= 8 and abs(small[1] - big[1]) <= 8


def test_table_without_json(images: dict[str, Path]) -> None:
    result = _run(str(images["astronaut.png"]), "--detector", "dlib_hog")
    assert result.returncode == 0, result.stderr
    assert f"{images['astronaut.png']}: 2 faces" in result.stdout
    assert "box (175.0, 76.0, 266.0, 167.0)  score 1.164" in result.stdout


def test_bad_inputs_are_reported_and_the_rest_processed(images: dict[str, Path]) -> None:
    order = ["missing.jpg", "astronaut.png", "empty.jpg", "truncated.jpg", "text.jpg", "good.jpg"]
    result = _run(*(str(images[name]) for name in order), "--detector", "dlib_hog", "--json")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    data = json.loads(result.stdout)
    assert [Path(entry["path"]).name for entry in data["images"]] == ["astronaut.png", "good.jpg"]
    assert all(entry["faces"] for entry in data["images"])
    errors = [line for line in _lines(result.stderr) if line.startswith("error:")]
    expected = {
        "missing.jpg": "no such file",
        "empty.jpg": "empty",
        "truncated.jpg": "truncated",
        "text.jpg": "not an image",
    }
    for name, reason in expected.items():
        mine = [line for line in errors if line.startswith(f"error: {images[name]}: ")]
        assert len(mine) == 1, (name, errors)
        assert reason in mine[0]
    assert errors[-1] == "error: 4 of 6 images could not be read"
    assert [e["path"] for e in data["errors"]] == [str(images[n]) for n in expected]
    # more than a few images: a progress bar on stderr
    assert "detect:" in result.stderr and "6/6" in result.stderr


def test_wrong_option_is_one_line(images: dict[str, Path]) -> None:
    result = _run(str(images["astronaut.png"]), "--detector", "mediapipe", "--upsample", "1")
    assert result.returncode == 2
    assert _lines(result.stderr)[-1].startswith("error: face detector 'mediapipe' has no option")
    assert "Traceback" not in result.stderr
