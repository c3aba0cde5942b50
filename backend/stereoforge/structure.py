"""Where to continue the background from into the strips at the frame's edge that the source camera never saw.

A hole that reaches the frame's edge (no covered pixel beyond it along its row) has one side to fill from.
Continued straight along the row, that side draws horizontal streaks, however the picture runs there: a
lattice's slanted bars, a slope's edge, a stripe turn into flat smears. Here each such hole pixel follows the
isophote (the direction along which the picture does not change: the structure tensor's weaker eigenvector,
measured on the covered pixels near the hole's side) back to the covered pixels, and reads the side where that
line meets them: a slanted bar continues slanted. Only where the orientation is clear (coherent) and the side
it leads to lies in the same depth band as the row's own side; elsewhere the row's own side, as before.
"""

from __future__ import annotations

import cv2
import numpy as np


def structure_sides(grey: np.ndarray, inv_depth: np.ndarray, holes: np.ndarray, nearest: tuple[np.ndarray, np.ndarray],
                    rows: np.ndarray, cols: np.ndarray, side: np.ndarray, sigma: float = 6.0, coherence: float = 0.5,
                    max_slope: float = 3.0, band: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """For hole pixels ``rows``, ``cols`` (N,) whose only side along the row is column ``side``: the row and
    the side column to continue each one from (see the module docstring).

    Args:
        grey: (H, W) float32 picture (covered pixels are read).
        inv_depth: (H, W) float32 1 / depth, 0 in holes.
        holes: (H, W) bool.
        nearest: (H, W) int each: the column of the nearest covered pixel at or left of each pixel (-1 for none)
            and at or right of it (W for none).
        sigma: the structure tensor's window (Gaussian, pixels).
        coherence: the least coherence ((l1 - l2) / (l1 + l2) of the tensor's eigenvalues) that counts as an
            orientation.
        max_slope: the steepest line followed, in rows per column (steeper ones end far away along the column,
            where the picture seldom still holds).
        band: how far (relative, in inverse depth) the side reached may lie from the row's own side.

    Returns:
        ``(rows, sides)`` (N,) each.
    """
    if rows.size == 0:
        return rows, side
    h, w = holes.shape
    slope = _isophote_slopes(grey, holes, rows, side, sigma, coherence, max_slope)
    traced = np.clip(np.rint(rows - slope * (cols - side)), 0, h - 1).astype(rows.dtype)
    found = np.where(side < cols, nearest[0][traced, cols], nearest[1][traced, cols])
    inside = (found >= 0) & (found < w)
    at = found.clip(0, w - 1)
    own = inv_depth[rows, side]
    ok = inside & (slope != 0.0) & (np.abs(inv_depth[traced, at] - own) <= band * own)
    return np.where(ok, traced, rows), np.where(ok, at, side)


def _isophote_slopes(grey: np.ndarray, holes: np.ndarray, rows: np.ndarray, cols: np.ndarray, sigma: float,
                     coherence: float, max_slope: float) -> np.ndarray:
    """(N,) the isophote's slope (rows per column) at pixels ``rows``, ``cols``, from the structure tensor of the
    covered pixels (those next to holes left out: their gradients see the hole's fill); 0 where it is not
    coherent. Measured over the columns near the pixels only: those of each half of the frame apart (the strips
    lie at its two edges)."""
    slope = np.zeros(rows.size, np.float32)
    pad = int(np.ceil(3 * sigma)) + 2
    for part in (cols < grey.shape[1] // 2, cols >= grey.shape[1] // 2):
        if part.any():
            x0 = max(int(cols[part].min()) - pad, 0)
            x1 = min(int(cols[part].max()) + pad + 1, grey.shape[1])
            slope[part] = _slopes(grey[:, x0:x1], holes[:, x0:x1], rows[part], cols[part] - x0, sigma, coherence,
                                  max_slope)
    return slope


def _slopes(grey: np.ndarray, holes: np.ndarray, rows: np.ndarray, cols: np.ndarray, sigma: float,
            coherence: float, max_slope: float) -> np.ndarray:
    """:func:`_isophote_slopes` over one piece of the frame."""
    gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    known = cv2.erode((~holes).astype(np.float32), np.ones((3, 3), np.uint8))
    norm = np.maximum(cv2.GaussianBlur(known, (0, 0), sigma), 1e-6)

    def mean(values: np.ndarray) -> np.ndarray:
        return (cv2.GaussianBlur(values * known, (0, 0), sigma) / norm)[rows, cols]

    jxx, jyy, jxy = mean(gx * gx), mean(gy * gy), mean(gx * gy)
    spread = np.sqrt((jxx - jyy) ** 2 + 4.0 * jxy * jxy)
    clear = spread > coherence * np.maximum(jxx + jyy, 1e-12)
    angle = 0.5 * np.arctan2(2.0 * jxy, jxx - jyy)  # of the gradient; the isophote is at right angles
    dx, dy = -np.sin(angle), np.cos(angle)
    slope = np.clip(dy / np.where(np.abs(dx) > 1e-3, dx, 1e-3), -max_slope, max_slope)
    return np.where(clear, slope, 0.0)
