"""How strong is each face method, measured the way an attacker would: the audit.

    .venv/bin/python experiments/anonymize_strength/measure.py [--methods blur,pixel8,...]

Inputs: the 118 demo photos, the demo's group photo, the same upscaled 6x (faces of ~700 px),
and the demo's moving-faces clip (48 frames, 640x480, as `make demo` builds them). Each method
runs with the default detector and `--audit`: an independent detector (dlib HOG) re-finds the
faces of the originals; a face is *covered* when it lies in an anonymized region and *still
matching* when FaceNet (CASIA) puts the output within squared L2 1.2 of its source. `closest`
is the smallest such distance over all compared faces (>= 32 px): the margin to 1.2.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import cv2

import deid
from deid.datasets import demo as demo_set
from deid.media import read_image, write_image
from demo.scenes import group_photo, write_moving_faces_video

METHODS = "blur,blur9,blur17,blur9_px,blur17_px,pixel16,pixel8,blackbox"


def inputs(folder: Path) -> dict[str, Path]:
    root = demo_set.require(demo_set.DEFAULT_ROOT)
    sets = {"demo photos": folder / "photos", "group photo": folder / "group"}
    sets["group photo x6"] = folder / "group6"
    sets["moving-faces clip"] = folder / "clip"
    shutil.copytree(root, sets["demo photos"])
    group = group_photo(root)
    write_image(sets["group photo"] / "group.png", group)
    big = cv2.resize(group, None, fx=6, fy=6, interpolation=cv2.INTER_CUBIC)
    write_image(sets["group photo x6"] / "group6.png", big)
    sets["moving-faces clip"].mkdir()
    write_moving_faces_video(root, sets["moving-faces clip"] / "moving_faces.mp4")
    assert read_image(sets["group photo x6"] / "group6.png").shape[0] == 6 * group.shape[0]
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default=METHODS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sets = inputs(Path(tmp))
        print("| method | input | faces (audit) | covered | missed | still matching | closest |")
        print("|---|---|---|---|---|---|---|")
        for method in args.methods.split(","):
            for name, folder in sets.items():
                out = Path(tmp) / "out" / method / folder.name
                summary = deid.anonymize_path(folder, out, method=method, audit=True)
                c = summary["counts"]
                closest = "-" if c["audit_closest"] is None else f"{c['audit_closest']:.2f}"
                print(
                    f"| {method} | {name} | {c['audit_found']} | {c['audit_covered']} | "
                    f"{c['audit_missed']} | {c['audit_still_matching']} | {closest} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
