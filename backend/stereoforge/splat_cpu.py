"""The splatter's compiled CPU kernel for eyes that keep rows (PARALLEL and OFFAXIS), with numba.

It computes what :func:`stereoforge.splat.splat_eye`'s torch ops compute (the same two taps per point, the same
z-buffer, the same two layers and the same compositing; tests compare them), in one pass over each row instead
of about forty passes over the whole frame: a row's scratch (its z-buffer and eight sums per pixel) stays in the
first-level cache, and nothing is written to memory but the eye itself.

Per row, with ``x = j - f e / Z - shift`` the landing position of the point of column ``j``:

1. where each point lands: its left tap ``floor(x)`` and the fraction that goes to the right tap;
2. the z-buffer: the nearest depth at each pixel, over the taps that weigh more than ``_MIN_WEIGHT``;
3. the sums: each tap adds its weighted colour and its weight to the front layer of its pixel, or to the back
   layer where the point lies farther than ``1 + depth_tolerance`` times the nearest depth there;
4. the eye: front layer over back layer, the coverage as alpha, dropout where it is under the threshold.

Rows are independent, so a batch is cut into blocks of rows that threads of a small pool run at once (the kernel
releases the GIL). numba is a dependency, but the splatter does not need it: without it, or for other dtypes and
devices, :func:`stereoforge.splat.splat_eye` runs its torch ops.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

try:  # numba compiles the kernel on first use (about 2 s), and caches it beside this file when it can
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; the torch path covers its absence
    numba = None

#: Blocks of rows per thread in one call: a few, so a thread that a busy core slows down takes fewer of them.
_BLOCKS_PER_THREAD = 4


def available() -> bool:
    """Whether the compiled kernel can run here (numba imports)."""
    return numba is not None


def splat_rows_kept(color: np.ndarray, depth: np.ndarray, focal_shift: float, shift_px: float, min_weight: float,
                    depth_tolerance: float, coverage_threshold: float, rgba: np.ndarray, eye_depth: np.ndarray,
                    dropout: np.ndarray, threads: int = 1) -> None:
    """Splat a batch of frames into an eye that keeps rows, writing ``rgba``, ``eye_depth`` and ``dropout``.

    Args:
        color: (B, 3, H, W) float32 linear RGB, C-contiguous.
        depth: (B, H, W) float32 planar depth, C-contiguous; non-finite or non-positive = no point.
        focal_shift: ``fx * tx``, the eye's x offset ``tx`` (metres) in the source camera times the focal length
            in pixels: a point at depth Z moves by ``focal_shift / Z - shift_px`` pixels.
        shift_px: the eye's lens shift in pixels.
        min_weight: taps weighing this or less count for nothing.
        depth_tolerance, coverage_threshold: as :func:`stereoforge.splat.splat_eye` takes them.
        rgba: (B, 4, H, W) float32 output: premultiplied linear RGB and coverage.
        eye_depth: (B, H, W) float32 output: the nearest depth at each pixel, inf where none.
        dropout: (B, H, W) bool output: coverage under ``coverage_threshold``.
        threads: threads to run blocks of rows on; 1 runs in the calling thread.
    """
    b, h, w = depth.shape
    args = (color, depth, np.float32(focal_shift), np.float32(shift_px), np.float32(min_weight),
            np.float32(1.0 + depth_tolerance), np.float32(coverage_threshold), rgba, eye_depth, dropout)
    rows = b * h
    if threads <= 1 or rows < 2:
        _kernel()(*args, 0, rows)
        return
    step = -(-rows // min(rows, threads * _BLOCKS_PER_THREAD))
    kernel = _kernel()
    for future in [_pool(threads).submit(kernel, *args, first, min(rows, first + step))
                   for first in range(0, rows, step)]:
        future.result()


def cpu_threads() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


_pool_lock = threading.Lock()
_pool_state: dict = {}


def _pool(threads: int) -> ThreadPoolExecutor:
    """A pool of ``threads`` workers, made once per process (a forked child makes its own: the parent's threads
    are not in it)."""
    key = (os.getpid(), threads)
    with _pool_lock:
        if _pool_state.get("key") != key:
            _pool_state["key"] = key
            _pool_state["pool"] = ThreadPoolExecutor(threads, thread_name_prefix="stereoforge-splat")
        return _pool_state["pool"]


_compiled: dict = {}


def _kernel():
    """The compiled kernel, compiled (or loaded from numba's cache) on first use."""
    with _pool_lock:
        if "rows_kept" not in _compiled:
            _compiled["rows_kept"] = numba.njit(_rows_kept_kernel, nogil=True, cache=True, boundscheck=False,
                                                error_model="numpy")
        return _compiled["rows_kept"]


def _rows_kept_kernel(color, depth, focal_shift, shift_px, min_weight, limit_factor, coverage_threshold,
                      rgba, eye_depth, dropout, first, last):
    """Rows ``first`` .. ``last - 1`` of the batch (row ``q`` is row ``q % H`` of frame ``q // H``).

    Pixel ``x`` of the row is slot ``x + 1`` of the scratch arrays: a point whose left tap is at column -1 still
    has its right tap on the image, and one whose left tap is the last column has its right tap past it. Slots
    0, ``w + 1`` and ``w + 2`` are off the image: written, never read.
    """
    b, h, w = depth.shape
    zero, one, inf = np.float32(0.0), np.float32(1.0), np.float32(np.inf)
    off, last_slot = np.float32(-1.0), np.float32(w + 1)
    left_slot = np.empty(w, np.int32)  # -1: the point has no tap on the image
    right_weight = np.empty(w, np.float32)
    nearest = np.empty(w + 3, np.float32)
    limit = np.empty(w + 3, np.float32)
    sums = np.empty(8 * (w + 3), np.float32)  # per slot: r, g, b, weight of the front layer, then the back layer
    for q in range(first, last):
        f = q // h
        i = q - f * h
        z_row = depth[f, i]
        # 1. Where each point lands (a loop the compiler vectorises: no branches, and with numpy's error model
        # a division by zero gives inf, not an exception).
        for j in range(w):
            z = z_row[j]
            x = focal_shift / z - shift_px
            x0 = np.floor(x + min_weight)  # within min_weight of a pixel centre: that pixel alone
            fraction = x - x0
            right_weight[j] = fraction if fraction > min_weight else zero
            # Slots -1 and w + 1 have no tap on the image; NaN becomes -1 (no comparison holds for it).
            slot = min(max(x0 + np.float32(j + 1), off), last_slot)
            slot = slot if z > zero else off
            slot = slot if z < inf else off
            left_slot[j] = np.int32(slot)
        # 2. The z-buffer.
        nearest[:] = inf
        for j in range(w):
            s = left_slot[j]
            if s >= 0:
                z = z_row[j]
                if z < nearest[s]:
                    nearest[s] = z
                if right_weight[j] > zero and z < nearest[s + 1]:
                    nearest[s + 1] = z
        for s in range(w + 3):
            limit[s] = nearest[s] * limit_factor
        # 3. The sums of both layers (a right tap that weighs nothing adds nothing, and needs no test).
        sums[:] = zero
        red, green, blue = color[f, 0, i], color[f, 1, i], color[f, 2, i]
        for j in range(w):
            s = left_slot[j]
            if s < 0:
                continue
            z, r, g, bl = z_row[j], red[j], green[j], blue[j]
            weight = right_weight[j]
            wt = one - weight
            o = s * 8 + (4 if z > limit[s] else 0)
            sums[o] += r * wt
            sums[o + 1] += g * wt
            sums[o + 2] += bl * wt
            sums[o + 3] += wt
            o = s * 8 + 8 + (4 if z > limit[s + 1] else 0)
            sums[o] += r * weight
            sums[o + 1] += g * weight
            sums[o + 2] += bl * weight
            sums[o + 3] += weight
        # 4. Front over back.
        for x in range(w):
            o = x * 8 + 8
            weight_front, weight_back = sums[o + 3], sums[o + 7]
            room = one - min(weight_front, one)
            factor_front = one / max(weight_front, one)
            factor_back = room / max(weight_back, one)
            alpha = weight_front * factor_front + weight_back * factor_back
            rgba[f, 0, i, x] = sums[o] * factor_front + sums[o + 4] * factor_back
            rgba[f, 1, i, x] = sums[o + 1] * factor_front + sums[o + 5] * factor_back
            rgba[f, 2, i, x] = sums[o + 2] * factor_front + sums[o + 6] * factor_back
            rgba[f, 3, i, x] = alpha
            eye_depth[f, i, x] = nearest[x + 1]
            dropout[f, i, x] = alpha < coverage_threshold
