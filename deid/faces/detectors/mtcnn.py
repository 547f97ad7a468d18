"""MTCNN (facenet-pytorch's P/R/O-Net weights): the detector the LFW protocol crops faces with,
and half of the anonymize default.

The cascade (Zhang et al. 2016) is ours, with facenet-pytorch's conventions (scale pyramid,
1-based box cells, thresholds 0.6/0.7/0.7, NMS 0.5 per scale, 0.7 across, 0.7 "Min" at the
end), so boxes agree with facenet-pytorch's `detect_face` to about a pixel. What differs is
speed: the pyramid levels and all crops of a stage are area-averaged at once from one
summed-area table of the frame (the same values as facenet-pytorch's per-box torch calls),
pooling avoids torch's slow CPU kernel (`mtcnn_nets`), and there is no torchvision import.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from deid.faces.detectors.base import FaceDetector
from deid.faces.types import Face, check_rgb_image


def load_mtcnn_nets(device: str = "cpu") -> tuple[object, object, object]:
    """P/R/O-Nets from the resolved weight files (facenet-pytorch's), `weights_only=True`."""
    import torch

    from deid.faces.detectors.mtcnn_nets import ONet, PNet, RNet
    from deid.weights import resolve

    folder = resolve("mtcnn").parent
    nets = []
    for cls, filename in ((PNet, "pnet.pt"), (RNet, "rnet.pt"), (ONet, "onet.pt")):
        net = cls()
        state = torch.load(folder / filename, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        nets.append(net.to(device).eval())
    return nets[0], nets[1], nets[2]


def nms(
    boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union", one: float = 1.0
) -> np.ndarray:
    """Greedy non-maximum suppression; indices kept, best first. `mode="min"` divides the
    intersection by the smaller box (MTCNN's last stage); `one` = 1 treats boxes as inclusive
    pixel ranges (MTCNN's own NMS), 0 as continuous ones (the torchvision NMS facenet-pytorch
    uses in the first two stages)."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    x0, y0, x1, y1 = boxes.T
    area = (x1 - x0 + one) * (y1 - y0 + one)
    order = np.argsort(scores, kind="stable")[::-1]
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]) + one)
        h = np.maximum(0.0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]) + one)
        inter = w * h
        denominator = (
            np.minimum(area[i], area[rest]) if mode == "min" else area[i] + area[rest] - inter
        )
        order = rest[inter / denominator <= threshold]
    return np.asarray(keep, dtype=np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
    """Boxes grown to squares of their longer side, same centre."""
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray, inclusive: bool = True) -> np.ndarray:
    extra = 1.0 if inclusive else 0.0
    w = boxes[:, 2] - boxes[:, 0] + extra
    h = boxes[:, 3] - boxes[:, 1] + extra
    out = boxes.copy()
    out[:, :4] = boxes[:, :4] + reg * np.stack([w, h, w, h], axis=1)
    return out


def integral_image(image: np.ndarray) -> np.ndarray:
    """(H + 1, W + 1, C) summed-area table of a uint8 image: any box's pixel sum in four
    lookups. Exact integers: int32 (OpenCV's, ~30x faster than two numpy cumsums, and half the
    memory to gather from) while 255 x H x W fits, else float64 (exact up to 2^53)."""
    fits = 255 * image.shape[0] * image.shape[1] < 2**31
    table = cv2.integral(image, sdepth=cv2.CV_32S if fits else cv2.CV_64F)
    return table.reshape(image.shape[0] + 1, image.shape[1] + 1, image.shape[2])


def _bins(starts: np.ndarray, sizes: np.ndarray, out: int) -> tuple[np.ndarray, np.ndarray]:
    """Per box, the input ranges of torch's adaptive average pooling to `out` cells: cell i
    averages inputs floor(i * n / out) .. ceil((i + 1) * n / out) - 1 (absolute positions)."""
    index = np.arange(out)[None, :]
    n = sizes[:, None]
    return starts[:, None] + (index * n) // out, starts[:, None] - ((-(index + 1) * n) // out)


def area_crops(table: np.ndarray, boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Boxes (N, 4) as x0, y0, x1, y1 (0-based, exclusive) of the image behind `table`, each
    resized to `height` x `width` by area averaging, exactly as facenet-pytorch's
    `interpolate(mode="area")` (torch's adaptive average pooling) does: (N, height, width, C).
    (Scores near a stage threshold depend on it: OpenCV's INTER_AREA lost a 0.85 face of the
    demo group photo.)"""
    y0, y1 = _bins(boxes[:, 1], boxes[:, 3] - boxes[:, 1], height)
    x0, x1 = _bins(boxes[:, 0], boxes[:, 2] - boxes[:, 0], width)
    top, bottom = y0[:, :, None], y1[:, :, None]
    left, right = x0[:, None, :], x1[:, None, :]
    sums = table[bottom, right] - table[top, right] - table[bottom, left] + table[top, left]
    counts = ((bottom - top) * (right - left))[..., None]
    return (sums / counts).astype(np.float32)


def _normalise(pixels: np.ndarray) -> np.ndarray:
    return (pixels - np.float32(127.5)) * np.float32(0.0078125)


def area_level(table: np.ndarray, height: int, width: int) -> np.ndarray:
    """The whole image behind `table` area-averaged to `height` x `width` (a pyramid level),
    separably: row bins, then column bins; (height, width, C)."""
    rows, cols = table.shape[0] - 1, table.shape[1] - 1
    y0, y1 = _bins(np.zeros(1, np.int64), np.array([rows]), height)
    x0, x1 = _bins(np.zeros(1, np.int64), np.array([cols]), width)
    band = table[y1[0]] - table[y0[0]]
    sums = band[:, x1[0]] - band[:, x0[0]]
    counts = ((y1[0] - y0[0])[:, None] * (x1[0] - x0[0])[None, :])[..., None]
    return (sums / counts).astype(np.float32)


def _crops(table: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The in-image part of each box (1-based inclusive, MTCNN's convention) resized to
    `size` x `size`, as (N, 3, size, size) network input; and which boxes gave a crop."""
    height, width = table.shape[0] - 1, table.shape[1] - 1
    cells = np.trunc(boxes[:, :4]).astype(np.int64)
    x0, y0 = np.maximum(cells[:, 0], 1) - 1, np.maximum(cells[:, 1], 1) - 1
    x1, y1 = np.minimum(cells[:, 2], width), np.minimum(cells[:, 3], height)
    valid = (x1 > x0) & (y1 > y0)
    crops = np.stack([x0, y0, x1, y1], axis=1)[valid]
    data = _normalise(area_crops(table, crops, size, size)).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(data), valid


class MtcnnDetector(FaceDetector):
    """MTCNN with facenet-pytorch's defaults (min face 20 px, stage thresholds 0.6/0.7/0.7).

    Every face is kept; each carries MTCNN's 5 landmarks in the order left eye, right eye, nose,
    left mouth corner, right mouth corner (image left/right). MTCNN boxes are looser than
    dlib's, and taller: on the astronaut the top edge sits ~14 px above dlib HOG's.
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

    def _net(self, net: object, data: np.ndarray) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            outputs = net(torch.from_numpy(data).to(self.device))  # type: ignore[operator]
        return [o.float().cpu().numpy() for o in outputs]

    def _proposals(self, table: np.ndarray) -> np.ndarray:
        """Stage 1: P-Net over the scale pyramid -> (N, 5 + 4) boxes, scores, regressions."""
        height, width = table.shape[0] - 1, table.shape[1] - 1
        scale = 12.0 / self.min_face_size
        shortest = min(height, width) * scale
        found = []
        while shortest >= 12:
            level = area_level(table, int(height * scale + 1), int(width * scale + 1))
            data = _normalise(level).transpose(2, 0, 1)[None]
            reg, prob = self._net(self._pnet, np.ascontiguousarray(data))
            ys, xs = np.nonzero(prob[0] >= self.thresholds[0])
            if len(ys):
                # float32 as facenet-pytorch computes them: box edges land on the same pixels
                cells = np.stack([xs, ys], axis=1).astype(np.float32)
                start = np.floor((2 * cells + 1) / np.float32(scale))
                end = np.floor((2 * cells + 12) / np.float32(scale))
                boxes = np.concatenate(
                    [start, end, prob[0, ys, xs, None], reg[0][:, ys, xs].T], axis=1
                )
                found.append(boxes[nms(boxes[:, :4], boxes[:, 4], 0.5, one=0.0)])
            scale *= self.factor
            shortest *= self.factor
        if not found:
            return np.zeros((0, 9))
        boxes = np.concatenate(found)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7, one=0.0)]
        regressed = _regress(boxes[:, :5], boxes[:, 5:9], inclusive=False)
        return _square(regressed)

    def detect(self, image: np.ndarray) -> list[Face]:
        table = integral_image(check_rgb_image(image))
        boxes = self._proposals(table)
        if len(boxes):  # stage 2: R-Net refines
            data, valid = _crops(table, boxes, 24)
            boxes = boxes[valid]
            reg, prob = self._net(self._rnet, data)
            keep = prob > self.thresholds[1]
            boxes, reg = np.concatenate([boxes[keep, :4], prob[keep, None]], 1), reg[keep]
            pick = nms(boxes[:, :4], boxes[:, 4], 0.7, one=0.0)
            boxes = _square(_regress(boxes[pick], reg[pick]))
        faces: list[Face] = []
        if len(boxes):  # stage 3: O-Net gives the final boxes and 5 landmarks
            data, valid = _crops(table, boxes, 48)
            boxes = boxes[valid]
            reg, marks, prob = self._net(self._onet, data)
            keep = prob > self.thresholds[2]
            boxes = np.concatenate([boxes[keep, :4], prob[keep, None]], 1)
            reg, marks = reg[keep], marks[keep]
            w = boxes[:, 2] - boxes[:, 0] + 1
            h = boxes[:, 3] - boxes[:, 1] + 1
            xs = w[:, None] * marks[:, :5] + boxes[:, 0:1] - 1
            ys = h[:, None] * marks[:, 5:] + boxes[:, 1:2] - 1
            boxes = _regress(boxes, reg)
            pick = nms(boxes[:, :4], boxes[:, 4], 0.7, "min")
            faces = [
                Face(tuple(boxes[i, :4]), boxes[i, 4], landmarks=np.stack([xs[i], ys[i]], 1))
                for i in pick
            ]
        return self._keep(faces)
