"""The numbers the CIAGAN and VQGAN de-identification papers print, as plain data.

Why: the report puts every number we measure beside the paper's, so the targets live in one
place (transcribed from docs/paper-numbers.md) instead of being scattered through table code.
Keys are our method names: a baseline's (conf/model/*.yaml; the papers' fixed-pixel blurs are
`blur9_px` / `blur17_px`), or for a trained method the
experiment that reproduces the paper's model (`ciagan_celeba` is the paper's CIAGAN; a
checkpoint names itself after its experiment, see `deid.checkpoints.experiment_name`); values
are as the papers print them: percent for detection, Recall@k and re-identification, raw FID,
and TAR@FAR as a fraction (CIAGAN Table 3 prints it so).
"""

from __future__ import annotations

from typing import Final

# Row order of every report table: the papers' order first, then anything else alphabetically.
METHOD_ORDER: Final = (
    "original",
    "pixel16",
    "pixel8",
    "blur9_px",
    "blur17_px",
    "blur9",
    "blur17",
    "blur",
    "blackbox",
    "maskout",
    "ciagan_celeba",
    "ciagan_ablation_classifier",
    "ciagan_ablation_faces",
    "gafni2019",
    "vqgan",
    "vqgan_demo_transformer",
)

# How the papers name our methods.
PAPER_LABELS: Final[dict[str, str]] = {
    "original": "original",
    "pixel16": "pixelization 16x16",
    "pixel8": "pixelization 8x8",
    "blur9_px": "blur 9x9",
    "blur17_px": "blur 17x17",
    "blur9": "blur 9x9 at a 128 px face, scaled",
    "blur17": "blur 17x17 at a 128 px face, scaled",
    "blur": "blur, sigma 1/8 of the face",
    "blackbox": "face black box",
    "maskout": "mask out",
    "ciagan_celeba": "CIAGAN",
    "ciagan_ablation_classifier": "CIAGAN, classification instead of siamese",
    "ciagan_ablation_faces": "CIAGAN, full faces instead of landmarks",
    "gafni2019": "Gafni et al. 2019",
    "vqgan": "VQGAN pipeline",  # the official COCO-Stuff transformer, converted (the paper's)
    "vqgan_demo_transformer": "VQGAN pipeline, demo model (64 px)",
}

# CIAGAN (CVPR 2020) Table 1, CelebA: ablation of the full model. The paper does not name the
# detector or embedder; the full model's 99.9 / 1.3 equal Table 2's dlib and PNCA columns.
CIAGAN_TABLE1: Final[dict[str, dict[str, float]]] = {
    "ciagan_celeba": {"detection": 99.9, "recall@1": 1.3, "fid": 2.1},
    "ciagan_ablation_classifier": {"detection": 64.6, "recall@1": 0.4, "fid": 63.2},
    "ciagan_ablation_faces": {"detection": 98.3, "recall@1": 1.1, "fid": 6.5},
}

# CIAGAN Table 2, CelebA: detection rate (dlib HOG, SSH) and identification Recall@1 (PNCA,
# FaceNet), percent.
CIAGAN_TABLE2: Final[dict[str, dict[str, float]]] = {
    "original": {"dlib": 100.0, "ssh": 100.0, "pnca": 70.7, "facenet": 65.1},
    "pixel16": {"dlib": 0.0, "ssh": 0.0, "pnca": 0.3, "facenet": 0.3},
    "pixel8": {"dlib": 0.0, "ssh": 0.0, "pnca": 0.4, "facenet": 0.3},
    "blur9_px": {"dlib": 90.6, "ssh": 38.6, "pnca": 16.9, "facenet": 57.2},
    "blur17_px": {"dlib": 68.4, "ssh": 0.3, "pnca": 1.9, "facenet": 0.5},
    "ciagan_celeba": {"dlib": 99.9, "ssh": 98.7, "pnca": 1.3, "facenet": 1.0},
}

# CIAGAN Table 3, LFW: TAR at FAR = 0.001 with FaceNet, (mean, std) as fractions.
CIAGAN_TABLE3: Final[dict[str, dict[str, tuple[float, float]]]] = {
    "original": {"vggface2": (0.986, 0.010), "casia": (0.965, 0.016)},
    "gafni2019": {"vggface2": (0.038, 0.015), "casia": (0.035, 0.011)},
    "ciagan_celeba": {"vggface2": (0.034, 0.016), "casia": (0.019, 0.008)},
}

# CIAGAN supplement Table 4: FID of the baselines (pix2pix and cyclegan have no method here).
CIAGAN_TABLE4_FID: Final[dict[str, float]] = {
    "pixel8": 510.83,
    "pixel16": 318.43,
    "blur9_px": 54.50,
    "blur17_px": 152.03,
    "pix2pix": 121.41,
    "cyclegan": 185.26,
    "ciagan_celeba": 2.08,
}

# VQGAN full-body de-identification, Table I, Supervisely Persons: percent of de-identified
# persons whose original is among the k nearest neighbours (ResNet-50 silhouette features),
# for k = 1..10. The paper's "face blurring" row states no kernel size: it is stored under
# VQGAN_BLUR_KEY and shown beside every blur method a report has (see `vqgan_table1_row`).
VQGAN_BLUR_KEY: Final = "face_blurring"
BLUR_METHODS: Final = ("blur", "blur9", "blur17", "blur9_px", "blur17_px")
VQGAN_TABLE1: Final[dict[str, tuple[float, ...]]] = {
    VQGAN_BLUR_KEY: (99.8, 99.8, 99.8, 99.8, 99.8, 99.8, 99.8, 99.8, 99.8, 99.8),
    "blackbox": (99.2, 99.3, 99.3, 99.3, 99.3, 99.3, 99.3, 99.5, 99.5, 99.5),
    "vqgan": (35.8, 43.3, 49.0, 50.8, 52.7, 54.3, 56.7, 58.9, 59.4, 60.4),
}


def vqgan_table1_row(method: str) -> tuple[float, ...] | None:
    """The VQGAN Table I row to compare `method` with; any blur method gets "face blurring"."""
    if method in BLUR_METHODS:
        return VQGAN_TABLE1[VQGAN_BLUR_KEY]
    return VQGAN_TABLE1.get(method)


def method_label(method: str) -> str:
    """How the papers name `method`; a method they do not have keeps its own name."""
    return PAPER_LABELS.get(method, method)


def method_rank(method: str) -> tuple[int, str]:
    """Sort key that puts methods in the papers' row order, unknown ones last by name."""
    try:
        return (METHOD_ORDER.index(method), method)
    except ValueError:
        return (len(METHOD_ORDER), method)
