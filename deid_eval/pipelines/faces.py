"""Face datasets (CelebA, demo, image folders): detection rate, Recall@k, FID and KID.

Protocol (protocols.md 2, 4, 6): the primary detector finds the faces the anonymizer gets
(every face, with 68 landmarks); the evaluated face of an image is the centre-weighted one.
Images whose original has no face are excluded and counted. Queries are the anonymized
images embedded at the original face box (so a method that destroys the face is still
scored rather than dropped); the gallery is the originals of the evaluated images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from deid.anonymizers.base import Anonymizer, Subject
from deid.datasets.records import FaceRecord, identity_labels
from deid.errors import DeidError
from deid.faces import (
    Face,
    LandmarkPredictor,
)
from deid.faces.align import CropTransform, crop, eye_transform
from deid.media import read_image
from deid_eval.cache import FeatureCache, cache_key
from deid_eval.metrics import FID, KID, DetectionRate, ReIdRecall
from deid_eval.pipelines.common import (
    PersonMasker,
    SampleGrid,
    batched,
    faces_from_entries,
    stable_seed,
    to_tensor_batch,
)
from deid_eval.pipelines.models import (
    detector_options,
    embedder_hashes,
    make_detector,
    make_embedder,
    thresholds_of,
)
from deid_eval.provenance import DETECTOR_WEIGHTS, weight_hashes

ALIGN_MODES = ("none", "ciagan")


@dataclass
class FaceEvalSetup:
    """Everything the face pipeline needs, resolved by the suite from the Hydra config."""

    records: list[FaceRecord]
    anonymizer: Anonymizer
    box_detector: dict[str, Any]  # {"name": ..., **options}: finds the faces to anonymize
    detectors: list[dict[str, Any]]  # [{"name", "threshold", **options}] for detection rate
    embedders: list[str]
    ks: list[int]
    seed: int
    batch_size: int
    fid: bool
    kid: bool
    kid_subsets: int
    kid_subset_size: int
    samples: int
    cache: FeatureCache
    dataset_key: str
    run_dir: Path
    device: str = "cpu"
    align: str = "none"  # "ciagan": score CIAGAN crops of the evaluated faces (ImageViews)
    embedder_specs: dict[str, Any] = field(default_factory=dict)  # trained embedders, by name


@dataclass
class DetectionCheck:
    """One detector run once per batch, scored at each of its thresholds."""

    spec: dict[str, Any]
    original_scores: np.ndarray  # best score per original image (-inf: no face)
    evaluated: np.ndarray  # images in the evaluation at all
    device: str = "cpu"

    def __post_init__(self) -> None:
        self.detector = make_detector(self.spec, self.device)
        self.metrics = {
            t: DetectionRate(self.detector, score_threshold=t) for t in thresholds_of(self.spec)
        }

    def flags(self, threshold: float) -> np.ndarray:
        """Evaluated images whose original this detector found at `threshold` (protocols 6)."""
        return self.evaluated & (self.original_scores >= threshold)

    def update(self, outputs: list[np.ndarray], indices: list[int]) -> None:
        detections = self.detector.detect_batch(outputs)
        for threshold, metric in self.metrics.items():
            metric.update_detections(detections, self.flags(threshold)[indices])

    def result(self) -> dict[str, Any]:
        by_threshold = {
            str(t): {"rate": float(m.compute()), "evaluated": int(self.flags(t).sum())}
            for t, m in self.metrics.items()
        }
        headline = thresholds_of(self.spec)[0]
        return {
            "rate": by_threshold[str(headline)]["rate"],
            "threshold": headline,
            "evaluated": by_threshold[str(headline)]["evaluated"],
            "by_threshold": by_threshold,
        }


def face_in_crop(face: Face, transform: CropTransform) -> Face:
    """The same face in crop coordinates (axis-aligned crops map boxes to boxes)."""
    x0, y0, x1, y1 = face.box
    corners = transform.apply(np.array([[x0 - 0.5, y0 - 0.5], [x1 - 0.5, y1 - 0.5]])) + 0.5
    box = (*corners.min(axis=0), *corners.max(axis=0))
    landmarks = None if face.landmarks is None else transform.apply(face.landmarks)
    return Face(box=box, score=face.score, landmarks=landmarks)


class ImageViews:
    """What the suite scores for each record: the whole photo, or (`align="ciagan"`) the CIAGAN
    crop of its evaluated face (eye-centred, 178x218, like CelebA's aligned images), so photo
    datasets are scored at the face scale the papers' numbers come from."""

    def __init__(
        self, paths: list[str], all_faces: list[list[Face]], chosen: list[Face | None], align: str
    ) -> None:
        if align not in ALIGN_MODES:
            raise DeidError(f"metrics.align={align!r}: choose one of {', '.join(ALIGN_MODES)}")
        self.paths, self.align = paths, align
        self.transforms: list[CropTransform | None] = [None] * len(paths)
        self.faces, self.chosen = all_faces, chosen
        if align == "ciagan":
            self.transforms = [_ciagan_transform(face) for face in chosen]
            self.chosen = [
                None if t is None else face_in_crop(face, t)  # type: ignore[arg-type]
                for face, t in zip(chosen, self.transforms, strict=True)
            ]
            self.faces = [[] if face is None else [face] for face in self.chosen]

    def image(self, index: int) -> np.ndarray:
        image = read_image(self.paths[index])
        transform = self.transforms[index]
        return image if transform is None else crop(image, transform, interpolation="cubic")


def _ciagan_transform(face: Face | None) -> CropTransform | None:
    if face is None or face.landmarks is None or len(face.landmarks) != 68:
        return None
    return eye_transform(face.landmarks)


class OriginalsPass:
    """Detections, embeddings and FID features of the original images (cached)."""

    def __init__(self, setup: FaceEvalSetup) -> None:
        self.setup = setup
        self.paths = [str(r.path) for r in setup.records]
        self.views: ImageViews | None = None  # set once faces() ran

    def _key(self, kind: str, **options: Any) -> str:
        return cache_key(kind=kind, dataset=self.setup.dataset_key, **options)

    def _view_key(self, kind: str, **options: Any) -> str:
        """Keys of what is computed on the views: they depend on the crops too."""
        return self._key(kind, align=self.setup.align, faces=self.setup.box_detector, **options)

    def faces(self) -> tuple[list[list[Face]], list[Face | None]]:
        """Every face of each original (with 68 landmarks) and the evaluated one, if any."""
        spec = self.setup.box_detector
        weights = weight_hashes([*DETECTOR_WEIGHTS[spec["name"]], "dlib_landmarks68"])
        key = self._key("faces", detector=spec, weights=weights)

        def compute() -> list[dict]:
            detector = make_detector(spec, self.setup.device)
            predictor = LandmarkPredictor()
            found = []
            for path in tqdm(self.paths, desc=f"originals: {spec['name']} + landmarks"):
                image = read_image(path)
                faces = predictor.add_landmarks(image, detector.detect(image))
                found.append(
                    {"shape": list(image.shape[:2]), "faces": [f.to_json() for f in faces]}
                )
            return found

        entries = self.setup.cache.get_or_compute("faces", key, compute)
        all_faces, chosen = faces_from_entries(entries)
        return all_faces, chosen

    def max_scores(self, spec: dict[str, Any], all_faces: list[list[Face]]) -> np.ndarray:
        """The best score detector `spec` gives each original (-inf: no face), so any
        threshold can be applied afterwards without detecting again."""
        assert self.views is not None
        options = detector_options(spec)
        same = {"name": spec["name"], **options} == self.setup.box_detector
        if same and self.setup.align == "none":
            return np.array([max((f.score for f in faces), default=-np.inf) for faces in all_faces])
        weights = weight_hashes(DETECTOR_WEIGHTS[spec["name"]])
        key = self._view_key("max_scores", detector=spec["name"], options=options, weights=weights)
        views = self.views

        def compute() -> torch.Tensor:
            detector = make_detector(spec, self.setup.device)
            scores = []
            for index in tqdm(range(len(self.paths)), desc=f"originals: {spec['name']} detection"):
                if views.chosen[index] is None:  # not evaluated: skip the work
                    scores.append(-np.inf)
                    continue
                found = detector.detect(views.image(index))
                scores.append(max((f.score for f in found), default=-np.inf))
            return torch.tensor(scores, dtype=torch.float64)

        return self.setup.cache.get_or_compute("max_scores", key, compute).numpy()

    def embeddings(self, name: str) -> torch.Tensor:
        assert self.views is not None
        views, chosen = self.views, self.views.chosen
        weights = embedder_hashes(name, self.setup.embedder_specs)
        key = self._view_key("embeddings", embedder=name, weights=weights)

        def compute() -> torch.Tensor:
            embedder = make_embedder(name, self.setup.device, self.setup.embedder_specs)
            rows = torch.zeros(len(self.paths), embedder.dim)
            todo = [i for i, face in enumerate(chosen) if face is not None]
            for chunk in tqdm(
                list(batched(todo, self.setup.batch_size)), desc=f"originals: {name}"
            ):
                images = [views.image(i) for i in chunk]
                rows[list(chunk)] = torch.from_numpy(
                    embedder.embed(images, [chosen[i] for i in chunk])
                )
            return rows

        return self.setup.cache.get_or_compute("embeddings", key, compute)

    def fid_features(self, extract, todo: list[int]) -> torch.Tensor:
        assert self.views is not None
        views = self.views
        weights = weight_hashes(["fid_inception"])
        key = self._view_key("fid_features", network="fid_inception", images=todo, weights=weights)

        def compute() -> torch.Tensor:
            chunks = []
            for chunk in tqdm(
                list(batched(todo, self.setup.batch_size)), desc="originals: FID features"
            ):
                chunks.append(extract(to_tensor_batch([views.image(i) for i in chunk])))
            return torch.cat(chunks) if chunks else torch.zeros(0, 2048)

        return self.setup.cache.get_or_compute("fid_features", key, compute)


def evaluate_faces(setup: FaceEvalSetup) -> dict[str, Any]:
    """Run the suite; returns the `metrics` section and the counts of results.json."""
    originals = OriginalsPass(setup)
    full_faces, full_chosen = originals.faces()
    views = originals.views = ImageViews(originals.paths, full_faces, full_chosen, setup.align)
    all_faces, chosen = views.faces, views.chosen
    evaluated = np.array([face is not None for face in chosen])
    todo = [i for i in range(len(setup.records)) if evaluated[i]]
    if not todo:
        raise ValueError("no face was found in any original image; nothing to evaluate")
    labels_of = identity_labels(setup.records)
    labels = torch.tensor([labels_of[r.identity] for r in setup.records])

    detection = {
        spec["name"]: DetectionCheck(
            spec, originals.max_scores(spec, all_faces), evaluated, setup.device
        )
        for spec in setup.detectors
    }
    reid = {}
    for name in setup.embedders:
        gallery = originals.embeddings(name)
        metric = ReIdRecall(ks=setup.ks)
        metric.update(gallery[todo], labels[todo], torch.tensor(todo), role="gallery")
        reid[name] = (metric, make_embedder(name, setup.device, setup.embedder_specs))
    fid_metric = kid_metric = extractor = None
    if setup.fid or setup.kid:
        from deid.features.fid_inception import load_fid_inception

        extractor = load_fid_inception(setup.device)

        def extract(batch: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return extractor(batch.to(setup.device).float() / 255.0).double().cpu()

        real = originals.fid_features(extract, todo)
        if setup.fid:
            fid_metric = FID(feature_extractor=extractor, num_features=2048)
            fid_metric.update_features(real, real=True)
        if setup.kid:
            size = min(setup.kid_subset_size, len(todo))
            kid_metric = KID(
                feature_extractor=extractor,
                num_features=2048,
                subsets=setup.kid_subsets,
                subset_size=size,
            )
            kid_metric.update_features(real, real=True)

    grid = SampleGrid(setup.samples)
    masker = PersonMasker(setup.anonymizer)
    for chunk in tqdm(
        list(batched(todo, setup.batch_size)), desc=f"anonymize + score ({setup.anonymizer.name})"
    ):
        images = [views.image(i) for i in chunk]
        subjects = [
            Subject(image=image, faces=all_faces[i], person_mask=masker(image))
            for image, i in zip(images, chunk, strict=True)
        ]
        seeds = [stable_seed(setup.records[i].image_id, setup.seed) for i in chunk]
        outputs = setup.anonymizer.anonymize(subjects, seeds=seeds)
        for check in detection.values():
            check.update(outputs, list(chunk))
        for metric, embedder in reid.values():
            vectors = embedder.embed(outputs, [chosen[i] for i in chunk])
            metric.update(
                torch.from_numpy(vectors),
                labels[list(chunk)],
                torch.tensor(list(chunk)),
                role="query",
            )
        if extractor is not None:
            fake = extract(to_tensor_batch(outputs))
            for metric in (fid_metric, kid_metric):
                if metric is not None:
                    metric.update_features(fake, real=False)
        for image, output in zip(images, outputs, strict=True):
            grid.add(image, output)

    result: dict[str, Any] = {"detection": {}, "reid": {}}
    for name, check in detection.items():
        result["detection"][name] = check.result()
    for name, (metric, _) in reid.items():
        scores = metric.compute()
        entry: dict[str, Any] = {"chance": float(scores["chance"]), "ks": {}}
        for k in setup.ks:
            entry["ks"][str(k)] = {
                "recall": float(scores[f"recall@{k}"]),
                "linkability": float(scores[f"linkability@{k}"]),
            }
        entry["recall@1"] = entry["ks"].get("1", {}).get("recall")
        entry["linkability@1"] = entry["ks"].get("1", {}).get("linkability")
        result["reid"][name] = entry
    if fid_metric is not None:
        result["fid"] = {
            "value": float(fid_metric.compute()),
            "samples": len(todo),
            "implementation": "pytorch-fid 0.3.0 computation (scipy sqrtm) on the offline FID Inception weights",
        }
    if kid_metric is not None:
        mean, std = kid_metric.compute()
        result["kid"] = {
            "mean": float(mean),
            "std": float(std),
            "subsets": setup.kid_subsets,
            "subset_size": min(setup.kid_subset_size, len(todo)),
        }
    samples = grid.save(setup.run_dir / "samples.png")
    return {
        "metrics": result,
        "counts": {
            "images": len(setup.records),
            "evaluated": len(todo),
            "no_face_in_original": int((~evaluated).sum()),
            "identities": len(set(labels[todo].tolist())),
        },
        "samples": None if samples is None else str(samples.name),
    }
