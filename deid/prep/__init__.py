"""Preprocessing shared by every method: datasets -> crops + a resumable, crash-safe manifest.

- `manifest`: the CSV manifest, generic over an entry type, with its failure log and settings;
- `pool`: the worker pool (one model set per process);
- `run`: one resumable run (dataset, loop, progress, summary) that the drivers share;
- `faces`: every face -> eye-centred crop + 68 landmarks (`python -m deid.prep.faces`);
- `bodies`: every person -> square crop + silhouette mask (`python -m deid.prep.bodies`).
"""
