"""`python -m deid.faces detect IMAGE... [--detector NAME]`: faces (and landmarks) per image.

`--detector` takes the names of `conf/detector/` (`default` = mediapipe+mtcnn, as `deid
anonymize` uses) and unions `a+b`.

Unreadable inputs are reported one line each (`error: <path>: <reason>`) and the rest are still
processed; the exit code is 2 when any input failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from deid.errors import BadInputError, DeidError
from deid.faces.detectors import build_detector_spec
from deid.faces.detectors.named import detector_names, detector_spec
from deid.faces.types import Face

PROGRESS_MIN_IMAGES = 4  # show a progress bar from this many images on


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m deid.faces", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    detect = sub.add_parser("detect", help="detect faces in images")
    detect.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    detect.add_argument(
        "--detector",
        default="default",
        metavar="NAME",
        help=f"default: default (mediapipe+mtcnn); one of {', '.join(detector_names())}, "
        "or a+b for a union",
    )
    detect.add_argument("--threshold", type=float, default=None, help="minimum detector score")
    detect.add_argument(
        "--upsample", type=int, default=None, help="dlib detectors: image upsampling steps"
    )
    detect.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    detect.add_argument(
        "--landmarks",
        action="store_true",
        help="add dlib's 68 landmarks to every face (otherwise the detector's own points, if any)",
    )
    return parser


def _detector_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.threshold is not None:
        options["score_threshold"] = args.threshold
    if args.upsample is not None:
        options["upsample"] = args.upsample
    return options


def _table(results: list[dict[str, Any]]) -> str:
    lines = []
    for entry in results:
        faces = entry["faces"]
        lines.append(f"{entry['path']}: {len(faces)} face{'s' if len(faces) != 1 else ''}")
        for index, face in enumerate(faces):
            x0, y0, x1, y1 = face["box"]
            points = face["landmarks"]
            extra = f"  {len(points)} landmarks" if points is not None else ""
            lines.append(
                f"  {index}: box ({x0:.1f}, {y0:.1f}, {x1:.1f}, {y1:.1f})"
                f"  score {face['score']:.3f}{extra}"
            )
    return "\n".join(lines)


def detect_command(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from deid.media import read_image

    spec = detector_spec(args.detector)
    options = _detector_options(args)
    if options and "members" in spec:
        raise DeidError("--threshold and --upsample apply to one detector, not a union")
    with build_detector_spec({**spec, **options}) as detector:
        predictor = None
        if args.landmarks:
            from deid.faces.landmarks import LandmarkPredictor

            predictor = LandmarkPredictor()
        results: list[dict[str, Any]] = []
        errors: list[dict[str, str]] = []
        paths = list(args.images)
        bar = tqdm(
            paths,
            desc="detect",
            unit="image",
            file=sys.stderr,
            disable=len(paths) < PROGRESS_MIN_IMAGES,
        )
        for path in bar:
            try:
                image = read_image(path)
            except BadInputError as err:
                tqdm.write(f"error: {err}", file=sys.stderr)
                errors.append({"path": err.path, "reason": err.reason})
                continue
            faces: list[Face] = detector.detect(image)
            if predictor is not None:
                faces = predictor.add_landmarks(image, faces)
            results.append({"path": str(path), "faces": [face.to_json() for face in faces]})
    if args.json:
        print(json.dumps({"images": results, "errors": errors}))
    else:
        print(_table(results))
    if errors:
        print(f"error: {len(errors)} of {len(paths)} images could not be read", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "detect":
        return detect_command(args)
    raise AssertionError(f"unhandled command {args.command}")
