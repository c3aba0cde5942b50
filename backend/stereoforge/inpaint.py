"""Inpainting of dropout: the pluggable stage that fills the pixels no point reached.

An inpainter is a callable ``(rgb, dropout, depth) -> rgb`` on one eye of one frame:

* ``rgb``: (H, W, 3) float32 linear RGB of the eye (straight, not premultiplied; undefined under dropout),
* ``dropout``: (H, W) bool, True where the pixel must be filled,
* ``depth``: (H, W) float32 planar depth of the eye's covered pixels, +inf under dropout,

returning the filled (H, W, 3) float32 linear RGB. Register new ones in :data:`INPAINTERS`.

Weight-free inpainters here:

* ``none``: leaves dropout black (for checking the raw eyes).
* ``background``: a hole next to a depth edge is background the source camera never saw, so each hole pixel
  takes the colour of the farther of its two nearest covered neighbours along the row (the eyes are offset
  horizontally, so disocclusions open horizontally). It never smears the foreground edge into the hole.
* ``telea``: OpenCV's Telea fast-marching inpainting, the usual baseline.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

Inpainter = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def fill_none(rgb: np.ndarray, dropout: np.ndarray, depth: np.ndarray) -> np.ndarray:
    out = rgb.copy()
    out[dropout] = 0.0
    return out


def nearest_covered_along_rows(dropout: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each pixel, the column of the nearest covered pixel at or left of it, and at or right of it.

    Returns two (H, W) int arrays; -1 where no covered pixel lies to the left, W where none lies to the right.
    """
    h, w = dropout.shape
    cols = np.broadcast_to(np.arange(w), (h, w))
    left = np.maximum.accumulate(np.where(dropout, -1, cols), axis=1)
    right = np.minimum.accumulate(np.where(dropout, w, cols)[:, ::-1], axis=1)[:, ::-1]
    return left, right


def fill_background(rgb: np.ndarray, dropout: np.ndarray, depth: np.ndarray) -> np.ndarray:
    out = rgb.copy()
    if not dropout.any():
        return out
    h, w = dropout.shape
    left, right = nearest_covered_along_rows(dropout)
    rows = np.broadcast_to(np.arange(h)[:, None], (h, w))
    has_left, has_right = left >= 0, right < w
    d_left = np.where(has_left, depth[rows, left.clip(0, w - 1)], -np.inf)
    d_right = np.where(has_right, depth[rows, right.clip(0, w - 1)], -np.inf)
    take_left = has_left & (~has_right | (d_left >= d_right))
    source_col = np.where(take_left, left, right)
    fillable = dropout & (has_left | has_right)
    out[fillable] = rgb[rows[fillable], source_col[fillable]]
    # A row with no covered pixel at all: take the column's fill from the rows above and below by Telea.
    rest = dropout & ~fillable
    if rest.any():
        out = fill_telea(out, rest, depth)
    return out


def fill_telea(rgb: np.ndarray, dropout: np.ndarray, depth: np.ndarray) -> np.ndarray:
    out = rgb.copy()
    if not dropout.any():
        return out
    # OpenCV inpaints 8-bit images: work on 16-bit-like precision by inpainting an 8-bit copy of the
    # sRGB-encoded picture, and keep the covered pixels exactly as they were.
    from .io.images import linear_to_srgb, srgb_to_linear

    srgb = np.clip(linear_to_srgb(np.clip(rgb, 0.0, 1.0)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    filled = cv2.inpaint(srgb, dropout.astype(np.uint8), 3, cv2.INPAINT_TELEA)
    out[dropout] = srgb_to_linear(filled.astype(np.float32) / 255.0)[dropout]
    return out


INPAINTERS: dict[str, Inpainter] = {
    "background": fill_background,
    "telea": fill_telea,
    "none": fill_none,
}
DEFAULT_INPAINTER = "background"
