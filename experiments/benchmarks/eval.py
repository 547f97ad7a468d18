"""The evaluation suite's speed: exact k-NN vs scikit-learn, FID features, LFW TAR@FAR.

    .venv/bin/python experiments/benchmarks/eval.py

Runs the two parts in one process and prints their tables:
- eval_knn.py: k-NN (k=10) of 1,000 queries over a 200,000 x 2,048 float32 gallery, our
  chunked exact search vs scikit-learn's brute-force NearestNeighbors (ratio, memory, agreement);
- eval_metrics.py: FID Inception features images/s at batch 1 and 16, and LFW TAR@FAR over
  6,000 pairs, vectorised vs a per-threshold loop (ratio).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import eval_knn  # noqa: E402
import eval_metrics  # noqa: E402


def main() -> None:
    print("## k-NN search")
    eval_knn.main([])
    print("\n## FID features and LFW TAR@FAR")
    eval_metrics.main()


if __name__ == "__main__":
    main()
