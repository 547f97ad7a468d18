"""MTCNN (facenet-pytorch's P/R/O-Nets): the detector the LFW protocol crops faces with."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deid.faces.detectors.base import FaceDetector, group_by_shape
from deid.faces.types import Face, check_rgb_image


def load_mtcnn_nets(device: str = "cpu") -> tuple[object, object, object]:
    """P/R/O-Nets built without facenet-pytorch's own loading, from the resolved weight files.

    facenet-pytorch's `MTCNN()` loads its files with a bare `torch.load`; we build the nets with
    `pretrained=False` and load the state dicts ourselves with `weights_only=True`.
    """
    import torch
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

    from deid.weights import resolve

    folder = resolve("mtcnn").parent
    nets = []
    for cls, filename in ((PNet, "pnet.pt"), (RNet, "rnet.pt"), (ONet, "onet.pt")):
        net = cls(pretrained=False)
        state = torch.load(folder / filename, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        nets.append(net.to(device).eval())
    return nets[0], nets[1], nets[2]


class MtcnnDetector(FaceDetector):
    """MTCNN with facenet-pytorch's defaults (min face 20 px, stage thresholds 0.6/0.7/0.7).

    Every face is kept (`keep_all=True` semantics); each carries MTCNN's 5 landmarks in the order
    left eye, right eye, nose, left mouth corner, right mouth corner (image left/right).
    MTCNN boxes are looser than dlib's, and taller: on the astronaut the top edge sits ~14 px
    above dlib HOG's.
    """

    name = "mtcnn"

    def __init__(
        self,
        score_threshold: float = 0.0,
        min_face_size: int = 20,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        device: str = "cpu",
    ) -> None:
        import torch

        self.score_threshold = float(score_threshold)
        self.min_face_size = int(min_face_size)
        self.thresholds = [float(t) for t in thresholds]
        self.factor = float(factor)
        self.device = torch.device(device)
        self._pnet, self._rnet, self._onet = load_mtcnn_nets(device)

    def _run(self, batch: np.ndarray) -> list[list[Face]]:
        """`batch` is (B, H, W, 3) uint8; facenet-pytorch returns object arrays under numpy 2."""
        import torch
        from facenet_pytorch.models.utils.detect_face import detect_face

        with torch.inference_mode():
            boxes, points = detect_face(
                batch,
                self.min_face_size,
                self._pnet,
                self._rnet,
                self._onet,
                self.thresholds,
                self.factor,
                self.device,
            )
        results = []
        for image_boxes, image_points in zip(boxes, points, strict=True):
            image_boxes = np.asarray(image_boxes, dtype=object).astype(float).reshape(-1, 5)
            image_points = np.asarray(image_points, dtype=object).astype(float).reshape(-1, 5, 2)
            faces = [
                Face(tuple(b[:4]), b[4], landmarks=p)
                for b, p in zip(image_boxes, image_points, strict=True)
            ]
            results.append(self._keep(faces))
        return results

    def detect(self, image: np.ndarray) -> list[Face]:
        return self._run(check_rgb_image(image)[None])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        images = [check_rgb_image(image) for image in images]
        results: list[list[Face]] = [[] for _ in images]
        for indices in group_by_shape(images).values():
            found = self._run(np.stack([images[i] for i in indices]))
            for index, faces in zip(indices, found, strict=True):
                results[index] = faces
        return results
