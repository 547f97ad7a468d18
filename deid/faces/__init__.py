"""Faces: detectors, 68-point landmarks, crop/align/paste-back, identity embedders.

Models are built by factories (`build_detector`, `build_embedder`, `LandmarkPredictor()`);
nothing heavy is loaded on import.
"""

from deid.faces.align import (
    CropTransform,
    antialiased_crop,
    box_transform,
    crop,
    eye_transform,
    facenet_rect,
    facenet_transform,
    paste_back,
    rect_transform,
)
from deid.faces.detectors import DETECTORS, FaceDetector, build_detector
from deid.faces.embedders import EMBEDDERS, FaceEmbedder, build_embedder
from deid.faces.landmarks import LandmarkPredictor, detect_with_landmarks
from deid.faces.selection import center_weighted_face, largest_face
from deid.faces.types import Face

__all__ = [
    "DETECTORS",
    "EMBEDDERS",
    "CropTransform",
    "Face",
    "FaceDetector",
    "FaceEmbedder",
    "LandmarkPredictor",
    "antialiased_crop",
    "box_transform",
    "build_detector",
    "build_embedder",
    "center_weighted_face",
    "crop",
    "detect_with_landmarks",
    "eye_transform",
    "facenet_rect",
    "facenet_transform",
    "largest_face",
    "paste_back",
    "rect_transform",
]
