"""Dataset readers for the official on-disk layouts (see data/README.md)."""
