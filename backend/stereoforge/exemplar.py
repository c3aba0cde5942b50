"""Exemplar-based estimates of hole pixels from the background around them, compiled with numba.

For each hole pixel, in the order given (outwards from the hole's background side, so that each one sees the
pixels filled before it), the square patch around it is compared with the patches around background pixels
beyond its background side (a band of rows above and below, up to ``reach`` columns out): over the patch
pixels known around the hole pixel, the mean squared difference; a candidate whose patch lacks one of them
is no match (where none matches, there is no estimate). The best ``candidates`` are averaged, each weighed by
``exp(-(d - d_best) / spread)``: a blend of the background's continuations that agree with what surrounds the
hole pixel, not one copy (a single copy is right only where it is exactly in phase with the truth, and off by
a whole texture's contrast elsewhere). The pixel then counts as known for the pixels after it.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _estimate(image, known, rows, cols, steps, radius, band, reach, candidates, spread):  # pragma: no cover
    h, w, _ = image.shape
    work = image.copy()
    seen = known.copy()
    out = np.full((rows.size, 3), np.nan, np.float32)
    best_d = np.empty(candidates)
    best_v = np.empty((candidates, 3))
    for i in range(rows.size):
        y, x, step = rows[i], cols[i], steps[i]
        for q in range(candidates):
            best_d[q] = 1e30
        # The pixels of the patch known here: a candidate is compared on all of them, or not at all, so its
        # sum can stop as soon as it exceeds the worst of the best so far.
        count = 0
        for py in range(-radius, radius + 1):
            for px in range(-radius, radius + 1):
                ty, tx = y + py, x + px
                if 0 <= ty < h and 0 <= tx < w and seen[ty, tx]:
                    count += 1
        if count < 6:  # too little known around it to judge a match
            continue
        for dy in range(-band, band + 1):
            sy = y + dy
            if sy < radius or sy >= h - radius:
                continue
            for t in range(1, reach + 1):
                sx = x + step * t
                if sx < radius or sx >= w - radius:
                    break
                if not known[sy, sx]:
                    continue
                limit = best_d[candidates - 1] * count
                total = 0.0
                for py in range(-radius, radius + 1):
                    ty = y + py
                    if ty < 0 or ty >= h:
                        continue
                    for px in range(-radius, radius + 1):
                        tx = x + px
                        if tx < 0 or tx >= w or not seen[ty, tx]:
                            continue
                        if not known[sy + py, sx + px]:
                            # Not comparable on all of them: never a match (infinite, it cannot enter the
                            # best, whatever their number).
                            total = np.inf
                            break
                        for c in range(3):
                            e = work[ty, tx, c] - image[sy + py, sx + px, c]
                            total += e * e
                    if total >= limit:
                        break
                d = total / count
                if d < best_d[candidates - 1]:
                    j = candidates - 1
                    while j > 0 and best_d[j - 1] > d:
                        best_d[j] = best_d[j - 1]
                        best_v[j] = best_v[j - 1]
                        j -= 1
                    best_d[j] = d
                    for c in range(3):
                        best_v[j, c] = image[sy, sx, c]
        if best_d[0] >= 1e29:
            continue
        weight = 0.0
        colour = np.zeros(3)
        for q in range(candidates):
            if best_d[q] >= 1e29:
                break
            wq = np.exp(-(best_d[q] - best_d[0]) / spread)
            weight += wq
            for c in range(3):
                colour[c] += wq * best_v[q, c]
        for c in range(3):
            out[i, c] = colour[c] / weight
            work[y, x, c] = out[i, c]
        seen[y, x] = True
    return out


def exemplar_estimates(image: np.ndarray, known: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                       steps: np.ndarray, radius: int = 2, band: int = 6, reach: int = 16, candidates: int = 8,
                       spread: float = 0.01) -> np.ndarray:
    """Estimates of the hole pixels ``rows``, ``cols`` (N,) from the pixels ``known`` (see the module docstring).

    Args:
        image: (H, W, 3) sRGB in [0, 1]; only its known pixels are read.
        known: (H, W) bool: pixels a patch may be compared on and copied from (the holes' background).
        rows, cols: (N,) the pixels to estimate, in order; steps: (N,) +1 or -1, the way to their background
            side along the row.
        radius: the patch is (2 radius + 1) squared; band: rows either side searched; reach: columns beyond the
            pixel searched towards its background side.
        candidates: how many of the best matches are blended; spread: how fast a worse match's weight falls,
            in mean squared difference.

    Returns:
        (N, 3) float32 sRGB; NaN where no patch matched.
    """
    if rows.size == 0:
        return np.zeros((0, 3), np.float32)
    return _estimate(np.ascontiguousarray(image, np.float32), np.ascontiguousarray(known),
                     rows.astype(np.int64), cols.astype(np.int64), steps.astype(np.int64), radius, band, reach,
                     candidates, spread)
