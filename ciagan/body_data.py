"""Full-body CIAGAN training data: person crops + silhouettes from `python -m deid.prep.bodies`.

The sampling (source, pair, target identity; seeds from `ResumableSampler`) is `FaceTriplets`';
only `load` differs: the crop and its mask are read from the preprocessing folder, resized to
the training size, augmented jointly, and the pose image is rendered from the augmented mask
(`deid.bodies.persons.silhouette_image`), so pose, paint mask and image stay aligned. Batch
keys are the face dataset's: `pose` holds the silhouette, `mask` the person mask.
"""

from __future__ import annotations

import cv2
import numpy as np

from ciagan.data import FaceImages, FaceTriplets
from deid.bodies.persons import resize_mask, silhouette_image
from deid.media import read_image
from deid.prep.bodies import read_mask


class BodyTriplets(FaceTriplets):
    """`FaceTriplets` over `BodyEntry`s (see `deid.prep.bodies.read_body_manifest`)."""

    def load(self, index: int, seed: int | None = None) -> dict[str, np.ndarray]:
        """One person at training size: image, silhouette image and mask (uint8)."""
        entry = self.entries[index]
        size = (self.image_size, self.image_size)
        image = cv2.resize(read_image(self.root / entry.crop), size, interpolation=cv2.INTER_AREA)
        mask = resize_mask(read_mask(self.root / entry.mask), self.image_size)
        if self.augment is not None and seed is not None:
            self.augment.set_random_seed(seed)
            out = self.augment(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        return {"image": image, "pose": silhouette_image(mask), "mask": mask}


class BodyImages(BodyTriplets, FaceImages):
    """Single labelled person crops (identity pre-training and evaluation)."""
