"""VQGAN full-body de-identification: segmentation-conditioned VQGAN + transformer synthesis."""
