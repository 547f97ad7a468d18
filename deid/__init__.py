"""deid: de-identify people in images and video, and measure how well it worked."""

__version__ = "0.1.0"
