"""An uploaded FITS image as a PNG the page's viewer can pan and zoom, on the image's own pixel grid.

Row 0 of the PNG is the image's top (FITS counts rows from the bottom); huge images are decimated by
a whole step, reported with the image so the page can place catalogue pixels on it.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from PIL import Image

MAX_SIDE = 4096  # the PNG's longest side at most; larger images are decimated


class NotAnImage(ValueError):
    """The file holds no 2-D image a viewer can show; the message says why."""


@dataclass(frozen=True)
class SkyImage:
    width: int  # the FITS image's own size, in pixels
    height: int
    step: int  # every step-th pixel is in the PNG
    png: bytes


def image_plane(path: Path) -> np.ndarray:
    """The first 2-D plane of the first HDU that has image data (a cube's first channel)."""
    try:
        with fits.open(path, memmap=False) as hdul:
            for hdu in hdul:
                data = getattr(hdu, "data", None)
                if isinstance(data, np.ndarray) and data.ndim >= 2 and data.dtype.kind in "iuf":
                    while data.ndim > 2:
                        data = data[0]
                    return np.asarray(data, dtype=np.float32)
    except (OSError, ValueError) as exc:
        raise NotAnImage(f"not a readable FITS file: {exc}") from None
    raise NotAnImage("the FITS file holds no 2-D image")


def render(path: Path) -> SkyImage:
    """The image with a square-root stretch between its 0.5 and 99.7 percentiles (blank pixels black)."""
    data = image_plane(path)
    height, width = data.shape
    step = max(1, math.ceil(max(height, width) / MAX_SIDE))
    shown = data[::step, ::step][::-1]
    finite = np.isfinite(shown)
    lo, hi = np.percentile(shown[finite], [0.5, 99.7]) if finite.any() else (0.0, 1.0)
    if not hi > lo:
        hi = lo + 1.0
    scaled = np.sqrt(np.clip((np.where(finite, shown, lo) - lo) / (hi - lo), 0.0, 1.0))
    out = io.BytesIO()
    Image.fromarray((scaled * 255).astype(np.uint8), mode="L").save(out, format="PNG", optimize=False)
    return SkyImage(width, height, step, out.getvalue())
