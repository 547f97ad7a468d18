"""The Anonymizer protocol, classic baselines, and the image/video anonymization runner."""
