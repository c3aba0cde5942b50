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

try:  # numba compiles the kernels on first use (about 2 s each), and caches them beside this file when it can
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
    _run(_rows_kept_kernel, args, b * h, threads * _BLOCKS_PER_THREAD, threads)


def cpu_threads() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def splat_general(color: np.ndarray, depth: np.ndarray, intrinsics: tuple[float, float, float, float],
                  source_to_eye: np.ndarray, shift_px: float, min_weight: float, depth_tolerance: float,
                  coverage_threshold: float, rgba: np.ndarray, eye_depth: np.ndarray, dropout: np.ndarray,
                  threads: int = 1) -> None:
    """Splat a batch of frames into an eye of any pose (TOE turns it), with four bilinear taps per point.

    As :func:`splat_rows_kept`, but points move in 3D: ``intrinsics`` is ``(fx, fy, cx, cy)`` of the source
    view (the eye's are the same, plus ``shift_px``), and ``source_to_eye`` the (4, 4) float64 rigid transform
    from the source camera to the eye's. Positions are worked out in float64, as the torch path does: in float32
    the round trip through camera space moves a point off its row by 1e-5 or so. Rows are not independent here,
    so threads take whole frames.
    """
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    args = (color, depth, fx, fy, cx, cy, np.ascontiguousarray(source_to_eye, np.float64), float(shift_px),
            np.float32(min_weight), np.float32(1.0 + depth_tolerance), np.float32(coverage_threshold), rgba,
            eye_depth, dropout)
    _run(_general_kernel, args, depth.shape[0], threads, threads)


def _run(kernel, args: tuple, count: int, blocks: int, threads: int) -> None:
    """``kernel(*args, first, last)`` over items 0 .. ``count`` - 1 (rows or frames): in the calling thread, or
    cut into at most ``blocks`` nearly equal blocks that a pool of ``threads`` runs."""
    if threads <= 1 or count < 2:
        kernel(*args, 0, count)
        return
    step = -(-count // min(count, blocks))
    for future in [_pool(threads).submit(kernel, *args, first, min(count, first + step))
                   for first in range(0, count, step)]:
        future.result()


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


# numba's options for the kernels: no GIL (threads run them side by side), cached beside this file, no bounds
# checks, and numpy's error model: a division by zero gives inf, as in numpy, instead of raising, which would
# keep the compiler from vectorising the loops.
_jit = numba.njit(nogil=True, cache=True, boundscheck=False, error_model="numpy") if numba else (lambda f: f)


@_jit
def _front_over_back(sums, o):
    """Front layer over back layer, from the eight sums at ``sums[o:o + 8]``: ``(r, g, b, alpha)``.

    A layer's colour is its mean colour times its coverage ``min(weight, 1)``: its sums times
    ``1 / max(weight, 1)``; the back layer's coverage counts only where the front one leaves room.
    """
    one = np.float32(1.0)
    weight_front, weight_back = sums[o + 3], sums[o + 7]
    room = one - min(weight_front, one)
    factor_front = one / max(weight_front, one)
    factor_back = room / max(weight_back, one)
    return (sums[o] * factor_front + sums[o + 4] * factor_back,
            sums[o + 1] * factor_front + sums[o + 5] * factor_back,
            sums[o + 2] * factor_front + sums[o + 6] * factor_back,
            weight_front * factor_front + weight_back * factor_back)


@_jit
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
            r, g, bl, alpha = _front_over_back(sums, x * 8 + 8)
            rgba[f, 0, i, x], rgba[f, 1, i, x], rgba[f, 2, i, x], rgba[f, 3, i, x] = r, g, bl, alpha
            eye_depth[f, i, x] = nearest[x + 1]
            dropout[f, i, x] = alpha < coverage_threshold


@_jit
def _general_kernel(color, depth, fx, fy, cx, cy, m, shift_px, min_weight, limit_factor, coverage_threshold,
                    rgba, eye_depth, dropout, first, last):
    """Frames ``first`` .. ``last - 1`` of the batch, four taps per point.

    Pixel ``(x, y)`` is slot ``(y + 1) * (w + 2) + x + 1`` of the scratch arrays: a padded grid, so a point whose
    top-left tap is at column or row -1 still has its other taps on the image. The padding is written, never
    read.
    """
    b, h, w = depth.shape
    n = h * w
    stride = w + 2
    zero, one, inf = np.float32(0.0), np.float32(1.0), np.float32(np.inf)
    slot = np.empty(n, np.int64)  # the top-left tap's slot; -1: no tap on the image
    weights = np.empty((n, 4), np.float32)  # top-left, top-right, bottom-left, bottom-right
    z_eye = np.empty(n, np.float32)
    nearest = np.empty((h + 2) * stride, np.float32)
    limit = np.empty((h + 2) * stride, np.float32)
    sums = np.empty(8 * (h + 2) * stride, np.float32)  # per slot: r, g, b, weight, front then back layer
    offsets = (0, 1, stride, stride + 1)
    for f in range(first, last):
        # 1. Where each point lands: unprojected, moved into the eye's camera and projected, in float64.
        for i in range(h):
            for j in range(w):
                p = i * w + j
                d = depth[f, i, j]
                slot[p] = -1
                if not (d > 0.0 and d < np.inf):
                    continue
                x = (j + 0.5 - cx) / fx * d
                y = -(i + 0.5 - cy) / fy * d
                zc = -d
                ex = m[0, 0] * x + m[0, 1] * y + m[0, 2] * zc + m[0, 3]
                ey = m[1, 0] * x + m[1, 1] * y + m[1, 2] * zc + m[1, 3]
                ez = -(m[2, 0] * x + m[2, 1] * y + m[2, 2] * zc + m[2, 3])
                if not ez > 1e-6:
                    continue
                u = cx + fx * ex / ez - shift_px
                v = cy - fy * ey / ez
                x0 = np.floor(u - 0.5)
                y0 = np.floor(v - 0.5)
                if not (x0 >= -1.0 and x0 <= w - 1.0 and y0 >= -1.0 and y0 <= h - 1.0):
                    continue
                ax = np.float32(u - 0.5 - x0)
                ay = np.float32(v - 0.5 - y0)
                for t, wt in enumerate(((one - ax) * (one - ay), ax * (one - ay), (one - ax) * ay, ax * ay)):
                    weights[p, t] = wt if wt > min_weight else zero
                slot[p] = (np.int64(y0) + 1) * stride + np.int64(x0) + 1
                z_eye[p] = np.float32(ez)
        # 2. The z-buffer.
        nearest[:] = inf
        for p in range(n):
            s = slot[p]
            if s >= 0:
                z = z_eye[p]
                for t in range(4):
                    if weights[p, t] > zero and z < nearest[s + offsets[t]]:
                        nearest[s + offsets[t]] = z
        for s in range(nearest.size):
            limit[s] = nearest[s] * limit_factor
        # 3. The sums of both layers.
        sums[:] = zero
        for p in range(n):
            s = slot[p]
            if s < 0:
                continue
            i = p // w
            j = p - i * w
            z, r, g, bl = z_eye[p], color[f, 0, i, j], color[f, 1, i, j], color[f, 2, i, j]
            for t in range(4):
                wt = weights[p, t]
                if wt > zero:
                    tap = s + offsets[t]
                    o = tap * 8 + (4 if z > limit[tap] else 0)
                    sums[o] += r * wt
                    sums[o + 1] += g * wt
                    sums[o + 2] += bl * wt
                    sums[o + 3] += wt
        # 4. Front over back.
        for i in range(h):
            for x in range(w):
                tap = (i + 1) * stride + x + 1
                r, g, bl, alpha = _front_over_back(sums, tap * 8)
                rgba[f, 0, i, x], rgba[f, 1, i, x], rgba[f, 2, i, x], rgba[f, 3, i, x] = r, g, bl, alpha
                eye_depth[f, i, x] = nearest[tap]
                dropout[f, i, x] = alpha < coverage_threshold
