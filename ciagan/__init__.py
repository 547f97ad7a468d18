"""CIAGAN: conditional identity anonymization GAN (Maximov et al., CVPR 2020)."""
