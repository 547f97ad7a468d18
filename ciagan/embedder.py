"""CIAGAN's identity network as an evaluation embedder: the PNCA column of CIAGAN Table 2.

The paper scores identification with "PNCA", a network trained with Proxy-NCA on the training
identities: `python train.py experiment=ciagan_identity_pretrain` trains it. This embedder
rebuilds that network from its checkpoint alone and embeds each face the way it saw faces in
training: the eye-centred crop of preprocessing (`deid.faces.regions.face_region`, with the
crop settings the checkpoint records), area-resized to the network's input size, scaled to
[-1, 1]; the L2-normalised `IdentityNet.embed` is the embedding. Faces without 68 landmarks get
them from dlib's predictor first; a face whose landmarks cannot size the crop (coinciding eye
corners) gets a zero row.

The evaluation suite reaches it through a config `_target_` (conf/embedder/pnca.yaml), so the
core never imports this package:

    python evaluate.py 'metrics.embedders=[facenet_casia,pnca]' \
        embedder.pnca.ckpt=<pretrain run>/checkpoints/last.ckpt
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ciagan.module import IDENTITY_PRETRAIN_COMMAND
from ciagan.nets import IdentityNet
from ciagan.tensors import to_image_tensor
from deid.checkpoints import hyper_parameters, load_checkpoint, submodule_weights
from deid.errors import DeidError
from deid.faces.embedders import FaceEmbedder
from deid.faces.landmarks import LandmarkPredictor
from deid.faces.regions import FACE_CROP_SCALE, FACE_CROP_SIZE, face_region
from deid.faces.types import Face


def load_identity_net(path: str | Path | None) -> tuple[IdentityNet, int, dict[str, Any]]:
    """(network in eval mode, its input size, the crop it was trained on) from an identity
    pre-training (or CIAGAN GAN) checkpoint."""
    state = load_checkpoint(
        path, "PNCA identity network", IDENTITY_PRETRAIN_COMMAND, setting="embedder.pnca.ckpt"
    )
    hparams = hyper_parameters(state)
    weights = submodule_weights(state, "identity_net")
    if "num_identities" not in hparams or not weights:
        raise DeidError(f"{path}: not a CIAGAN identity network checkpoint (no identity_net)")
    crop = dict(hparams.get("crop") or {})
    if crop.get("kind", "faces") != "faces":
        raise DeidError(f"{path}: this identity network was trained on {crop['kind']}, not faces")
    image_size = int(hparams.get("image_size", 128))
    net = IdentityNet(
        int(hparams["num_identities"]),
        image_size=image_size,
        **dict(hparams.get("identity") or {}),
    )
    net.load_state_dict(weights)
    return net.eval(), image_size, crop


class PncaEmbedder(FaceEmbedder):
    """`embed(images, faces)` with CIAGAN's (Proxy-NCA) identity network."""

    name = "pnca"

    def __init__(
        self,
        net: IdentityNet,
        image_size: int,
        crop_size: Sequence[int] = FACE_CROP_SIZE,
        crop_scale: float = FACE_CROP_SCALE,
        batch_size: int = 32,
        device: str = "cpu",
        landmarks: LandmarkPredictor | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.dim = int(net.embedding_dim)
        self.image_size = int(image_size)  # the network's input side (its training size)
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.crop_scale = float(crop_scale)
        self.batch_size = int(batch_size)
        self._landmarks = landmarks

    @classmethod
    def from_checkpoint(cls, ckpt: str | Path | None, **options: Any) -> PncaEmbedder:
        """The network of `ckpt`, cropping faces as its training data was cropped."""
        net, image_size, crop = load_identity_net(ckpt)
        if crop.get("size"):
            options.setdefault("crop_size", crop["size"])
        if crop.get("scale"):
            options.setdefault("crop_scale", crop["scale"])
        return cls(net, image_size, **options)

    def _points(self, image: np.ndarray, face: Face) -> np.ndarray:
        if face.landmarks is not None and len(face.landmarks) == 68:
            return np.asarray(face.landmarks, dtype=np.float64)
        if self._landmarks is None:
            self._landmarks = LandmarkPredictor()
        return self._landmarks.predict(image, face.box)

    def model_input(self, image: np.ndarray, face: Face) -> np.ndarray | None:
        """The (S, S, 3) uint8 face the network sees, or None when no crop can be cut."""
        try:
            region = face_region(image, self._points(image, face), self.crop_size, self.crop_scale)
        except ValueError:
            return None
        size = (self.image_size, self.image_size)
        return cv2.resize(region.crop, size, interpolation=cv2.INTER_AREA)

    @torch.no_grad()
    def embed(self, images: Sequence[np.ndarray], faces: Sequence[Face]) -> np.ndarray:
        pairs = self._pairs(images, faces)
        rows = np.zeros((len(pairs), self.dim), np.float32)
        inputs = [(i, self.model_input(image, face)) for i, (image, face) in enumerate(pairs)]
        usable = [(i, x) for i, x in inputs if x is not None]
        for start in range(0, len(usable), self.batch_size):
            chunk = usable[start : start + self.batch_size]
            batch = torch.stack([to_image_tensor(x) for _, x in chunk]).to(self.device)
            vectors = self.net.embed(batch).float().cpu().numpy()
            rows[[i for i, _ in chunk]] = vectors
        return rows
