"""Forward splatting of RGB-D frames into a stereo eye, in torch (CPU or CUDA).

Each source pixel is unprojected with its depth (seed 000, eq. 1-3), moved into the eye's camera
(:mod:`stereoforge.rig`), projected, and splatted bilinearly onto the four nearest target pixels (seed 002's
forward splatting). Where several points land on one pixel, the nearest surface wins: contributions within
``depth_tolerance`` of the nearest depth at that pixel form the front layer; everything farther forms a back
layer that only shows through where the front layer covers less than the whole pixel (front-to-back "over"
compositing of two layers). This keeps depth edges antialiased like a real render, instead of either
hard-overwriting (aliasing) or blending foreground into background (seed 002's sqrt(2)^disparity weights).

Pixels whose total coverage stays under ``coverage_threshold`` are dropout: no point reached them. The eye's
depth is the nearest surface at each pixel, as a renderer's Z pass gives it.

How it is made fast (the results are those of the plain formulation, to float rounding):

* On the CPU, the compiled kernels of :mod:`stereoforge.splat_cpu` do the work: for an eye that keeps rows
  (PARALLEL, OFFAXIS; the common case), one pass per row, in cache, on all cores; for one that turns (TOE), one
  pass per frame. What follows is the torch path, which runs on CUDA, in float64 or without numba, and is the
  kernels' reference in the tests.

* Every point gets one integer *slot*, its top-left tap, in a target grid padded by two pixels on each side;
  its taps are fixed offsets from the slot (``+1`` right, ``+row`` down). A point that lands outside the image,
  or has no depth, is clamped into the padding, which is cut off at the end: no tap needs a bounds test.
* Per tap: one ``amin`` scatter for the nearest depth, run on the float bits read as integers (non-negative
  IEEE floats order like their bit patterns, and integer ``amin`` is several times faster); the z-buffer is
  also the eye's depth. Then, per pair of taps side by side, one gather of both their front-layer limits (as
  one complex number); and per tap, two ``scatter_add`` passes for four sums (weighted r, g, b, and the weight)
  in both layers at once: channels travel in pairs as complex numbers, whose addition is two float additions,
  so one index read serves two channels.
* Scratch tensors are kept between calls (per thread), so a clip costs no allocation, and no page faults, per
  batch. On a GPU the whole batch goes at once; on the CPU, chunks of at most about a quarter of a million
  points (whole frames, or blocks of rows when rows are kept), with torch ops on one thread (see
  :func:`_single_threaded_ops`), which also bounds the scratch memory whatever the frame size.
"""

from __future__ import annotations

import math
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from . import splat_cpu
from .camera import Intrinsics, project, unproject
from .rig import EyeView

#: Bilinear weights at or under this do not count: not for coverage, and not for the nearest depth. (When rows
#: are kept, a point that close to a pixel centre lands on that pixel alone.)
_MIN_WEIGHT = 1e-6
#: Padding of the target grid, in pixels on each side: a clamped slot and its taps then stay in the padding.
_PAD = 2
#: On the CPU, points splatted together at most (a bound on scratch memory; measured on 2 cores, 2^18 ran about
#: 10 % faster than 2^19, and 2^16 or less slower: more per-op overhead than they win in cache).
_CPU_CHUNK_POINTS = 1 << 18


@dataclass
class EyeImage:
    """One eye for a batch of frames.

    Attributes:
        rgba: (B, 4, H, W) linear RGB premultiplied by alpha, and alpha = coverage in [0, 1].
        depth: (B, H, W) planar depth in the eye's camera (metres) of the nearest point at each pixel; +inf where
            nothing landed.
        dropout: (B, H, W) bool, True where nothing (or too little) landed: the pixels to inpaint.
    """

    rgba: torch.Tensor
    depth: torch.Tensor
    dropout: torch.Tensor


def valid_depth(depth: torch.Tensor) -> torch.Tensor:
    """Pixels with a usable depth: finite and positive. Others make no point."""
    return torch.isfinite(depth) & (depth > 0)


def splat_eye(color: torch.Tensor, depth: torch.Tensor, k: Intrinsics, view: EyeView, *,
              depth_tolerance: float = 0.05, coverage_threshold: float = 0.5,
              general_path: bool = False, compiled: bool = True, out: EyeImage | None = None) -> EyeImage:
    """Render one eye of a batch of RGB-D frames.

    Args:
        color: (B, 3, H, W) linear RGB of the source view.
        depth: (B, H, W) planar depth of the source view in metres; non-finite or non-positive = no point.
        k: intrinsics of the source view; the eye uses the same intrinsics (plus its lens shift).
        view: the eye's pose and lens shift relative to the source camera.
        depth_tolerance: relative depth band, around the nearest point at a pixel, that counts as one surface.
        coverage_threshold: a pixel covered less than this is dropout.
        general_path: use the general four-tap path even for an eye that only moved along its x axis
            (PARALLEL, OFFAXIS), where rows are kept and two taps per point suffice. Both give the same
            result to float rounding (tests compare them).
        compiled: on the CPU, splat float32 frames with the compiled kernels of :mod:`stereoforge.splat_cpu`
            (when numba is installed): two taps per point for an eye that keeps rows, else four. False runs the
            torch ops everywhere; both give the same result to float rounding (tests compare them).
        out: an eye to write into instead of new tensors (a clip then costs no allocation, and no page faults,
            per batch): from an earlier call with frames of the same shape, dtype and device.

    Returns:
        The eye as an :class:`EyeImage` of the same height and width. Frames are independent of each other:
        the result does not depend on how a clip is cut into batches.
    """
    b, _, h, w = color.shape
    dtype = color.dtype if color.dtype in _INT_OF_FLOAT else torch.float32  # sums of half floats drift
    if out is None:
        out = EyeImage(torch.empty((b, 4, h, w), dtype=dtype, device=color.device),
                       torch.empty((b, h, w), dtype=dtype, device=color.device),
                       torch.empty((b, h, w), dtype=torch.bool, device=color.device))
    elif (out.rgba.shape, out.depth.shape, out.dropout.shape) != ((b, 4, h, w), (b, h, w), (b, h, w)) or \
            out.rgba.dtype != dtype or out.depth.dtype != dtype or out.dropout.dtype != torch.bool or \
            not all(t.device == color.device and t.is_contiguous() for t in (out.rgba, out.depth, out.dropout)):
        raise ValueError(f"out does not fit frames of shape {tuple(color.shape)}, {color.dtype}, on {color.device}: "
                         "pass an eye that splat_eye returned for frames like these")
    if view.is_source:
        out.rgba[:, :3].copy_(color)
        out.rgba[:, 3].fill_(1.0)
        out.depth.copy_(depth)
        out.dropout.fill_(False)
        return out if dtype == color.dtype else _as_dtype(out, color.dtype)

    m = view.source_to_eye
    rows_kept = not general_path and keeps_rows(view)

    if compiled and uses_cpu_kernel(view, color.device, color.dtype):
        frames = (color.detach().to(dtype).contiguous().numpy(), depth.detach().to(dtype).contiguous().numpy())
        outputs = (out.rgba.numpy(), out.depth.numpy(), out.dropout.numpy())
        if rows_kept:
            splat_cpu.splat_rows_kept(*frames, k.fx * float(m[0, 3]), view.shift_px, _MIN_WEIGHT, depth_tolerance,
                                      coverage_threshold, *outputs, kernel_threads())
        else:
            splat_cpu.splat_general(*frames, (k.fx, k.fy, k.cx, k.cy), m, view.shift_px, _MIN_WEIGHT,
                                    depth_tolerance, coverage_threshold, *outputs, kernel_threads())
        return out if dtype == color.dtype else _as_dtype(out, color.dtype)

    def splat_chunk(frames: slice, rows: slice) -> None:
        ws = _workspace()
        c, d = color[frames, :, rows].to(dtype), depth[frames, rows].to(dtype)
        if rows_kept:
            grid, z, slot, taps = _taps_rows_kept(ws, d, k, view)
        else:
            grid, z, slot, taps = _taps_general(d, k, view)
        sums, nearest = _accumulate(ws, c, z, slot, taps, grid, depth_tolerance)
        _compose(ws, sums, nearest, grid, coverage_threshold, out.rgba[frames, :, rows], out.depth[frames, rows],
                 out.dropout[frames, rows])

    with _single_threaded_ops(color.device):
        for frames, rows in _chunks(b, h, w, color.device, rows_kept):
            splat_chunk(frames, rows)
    return out if dtype == color.dtype else _as_dtype(out, color.dtype)


def _as_dtype(eye: EyeImage, dtype: torch.dtype) -> EyeImage:
    return EyeImage(eye.rgba.to(dtype), eye.depth.to(dtype), eye.dropout)


def keeps_rows(view: EyeView) -> bool:
    """Whether the eye only moved along its x axis (PARALLEL, OFFAXIS): each row of the source lands on the same
    row of the eye, and two taps per point suffice."""
    m = view.source_to_eye
    return bool(np.allclose(m[:3, :3], np.eye(3)) and m[1, 3] == 0 and m[2, 3] == 0)


def uses_cpu_kernel(view: EyeView, device: torch.device, dtype: torch.dtype = torch.float32) -> bool:
    """Whether :func:`splat_eye` (with its defaults) runs a compiled kernel for this eye, device and dtype."""
    return device.type == "cpu" and dtype != torch.float64 and not view.is_source and splat_cpu.available()


def kernel_threads() -> int:
    """Threads the compiled CPU kernel runs on: torch's thread count (``torch.set_num_threads``, or
    ``OMP_NUM_THREADS``), at most the cores this process may use."""
    return min(torch.get_num_threads(), splat_cpu.cpu_threads())


def _chunks(b: int, h: int, w: int, device: torch.device, rows_kept: bool):
    """(frames, rows) slices splatted together: all at once on a GPU. On the CPU, at most
    ``_CPU_CHUNK_POINTS`` points, in whole frames or, when rows are kept (rows are then independent), in blocks
    of rows."""
    if device.type != "cpu":
        yield slice(0, b), slice(0, h)
        return
    if h * w > _CPU_CHUNK_POINTS and rows_kept:
        blocks = -(-h * w // _CPU_CHUNK_POINTS)
        step = -(-h // blocks)  # rows in each of ``blocks`` nearly equal blocks
        for i in range(b):
            for r in range(0, h, step):
                yield slice(i, i + 1), slice(r, min(h, r + step))
        return
    step = max(1, _CPU_CHUNK_POINTS // (h * w))
    for i in range(0, b, step):
        yield slice(i, min(b, i + step)), slice(0, h)


@contextmanager
def _single_threaded_ops(device: torch.device):
    """On the CPU, run torch ops on one thread for the duration.

    The splatter's ops are many and small; split over several cores, each meets the others at a barrier, and a
    core that is busy elsewhere (another process, a noisy neighbour on a shared machine) stalls them all:
    measured on 2 cores, two threads ran 1.5 to 5 times slower than one. Nor did running chunks on two threads
    at once help there: the ops are bound by memory bandwidth, which the cores share. Torch keeps the thread
    count per thread under OpenMP, so other threads of the process are not affected.
    """
    previous = torch.get_num_threads()
    if device.type != "cpu" or previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# -- the padded target grid and the scratch tensors --------------------------------------------------------


@dataclass(frozen=True)
class _Grid:
    """The padded target grid: ``frames`` x ``rows`` x ``cols`` slots, the image at ``top``/``left``."""

    frames: int
    rows: int
    cols: int
    top: int
    left: int
    height: int
    width: int

    @property
    def size(self) -> int:
        return self.frames * self.rows * self.cols

    def crop(self, flat: torch.Tensor) -> torch.Tensor:
        """(..., size) slot values -> (..., B, H, W) image values (a view)."""
        grid = flat.view(*flat.shape[:-1], self.frames, self.rows, self.cols)
        return grid[..., self.top:self.top + self.height, self.left:self.left + self.width]


class _Workspace:
    """Scratch tensors by name, kept between calls; one grows when a call needs more, never shrinks."""

    def __init__(self):
        self._tensors: dict[str, torch.Tensor] = {}

    def __call__(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        numel = math.prod(shape)
        t = self._tensors.get(name)
        if t is None or t.numel() < numel or t.dtype != dtype or t.device != device:
            self._tensors[name] = None  # let the old one go before making the new one
            t = self._tensors[name] = torch.empty(numel, dtype=dtype, device=device)
        return t[:numel].view(shape)


_local = threading.local()


def _workspace() -> _Workspace:
    if not hasattr(_local, "workspace"):
        _local.workspace = _Workspace()
    return _local.workspace


def release_workspace() -> None:
    """Free this thread's scratch tensors (they are remade on the next call)."""
    _local.__dict__.pop("workspace", None)


@lru_cache(maxsize=8)
def _row_starts(frames: int, height: int, stride: int, device: torch.device) -> torch.Tensor:
    """(B, H, 1) int64: the slot of column 0 of each image row in a grid with ``stride`` slots per row, whose
    image starts ``_PAD`` slots into the row."""
    return (torch.arange(frames * height, device=device) * stride + _PAD).view(frames, height, 1)


@lru_cache(maxsize=8)
def _ones(n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.ones(n, device=device, dtype=dtype)


@lru_cache(maxsize=8)
def _columns(width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.arange(width, device=device, dtype=dtype)


#: Integers of the same width as each float type the sums are kept in.
_INT_OF_FLOAT = {torch.float32: torch.int32, torch.float64: torch.int64}


def _complex(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


# -- where the points land ----------------------------------------------------------------------------------


def _taps_rows_kept(ws: _Workspace, depth: torch.Tensor, k: Intrinsics, view: EyeView):
    """Two taps per point for an eye moved along its x axis only: rows are kept, and ``x = j - f e / Z - shift``
    for an eye at ``e`` along +X, the familiar disparity.

    A point within ``_MIN_WEIGHT`` of a pixel centre lands on that pixel alone (it is snapped): so the left tap
    always weighs more than ``_MIN_WEIGHT`` and needs no test, and the right one weighs either nothing or more.

    Returns ``(grid, z, slot, pairs)``: ``z`` (N,) depth, ``slot`` (N,) int64, and the taps as ``pairs``
    [(offset, (weight, may_weigh_nothing), (weight, may_weigh_nothing))], see :func:`_accumulate`.
    """
    b, h, w = depth.shape
    n, dtype, device = depth.numel(), depth.dtype, depth.device
    grid = _Grid(b, h, w + 2 * _PAD, 0, _PAD, h, w)
    # Depth 0 for a point with none: its disparity is infinite and it goes into the padding.
    z = torch.nan_to_num(depth.reshape(n), nan=0.0, posinf=0.0, neginf=0.0, out=ws("z", (n,), dtype, device))
    z.clamp_(min=0.0)
    # The fraction comes from the disparity alone, not from j + disparity: smaller numbers, finer float steps.
    right = torch.div(k.fx * float(view.source_to_eye[0, 3]), z, out=ws("right", (n,), dtype, device))
    right.sub_(view.shift_px)
    x0 = torch.add(right, _MIN_WEIGHT, out=ws("x0", (n,), dtype, device)).floor_()
    torch.threshold_(right.sub_(x0), _MIN_WEIGHT, 0.0)  # inf - inf = NaN for a point with no depth: 0 too
    left = torch.neg(right, out=ws("left", (n,), dtype, device)).add_(1.0)
    x0.nan_to_num_(nan=-_PAD).view(b, h, w).add_(_columns(w, device, dtype)).clamp_(-_PAD, w)
    slot = ws("slot", (n,), torch.int64, device)
    slot.copy_(x0).view(b, h, w).add_(_row_starts(b, h, grid.cols, device))
    return grid, z, slot, [(0, (left, False), (right, True))]


def _taps_general(depth: torch.Tensor, k: Intrinsics, view: EyeView):
    """Four bilinear taps per point for any eye pose; returns what :func:`_taps_rows_kept` returns.

    Positions are worked out in float64: in float32 the round trip through camera space puts a point of row
    ``i`` at ``i - 1e-5`` or so, whose tap on row ``i - 1`` then gets a weight over the tiny-weight cut and
    enters that row's z-buffer.
    """
    b, h, w = depth.shape
    grid = _Grid(b, h + 2 * _PAD, w + 2 * _PAD, _PAD, _PAD, h, w)
    valid = valid_depth(depth)
    mt = torch.as_tensor(view.source_to_eye, dtype=torch.float64, device=depth.device)
    points = unproject(depth.masked_fill(~valid, 1.0).double(), k) @ mt[:3, :3].T + mt[:3, 3]
    u, v, z = project(points, k, view.shift_px)
    x0, y0 = torch.floor(u - 0.5), torch.floor(v - 0.5)
    ax, ay = (u - 0.5 - x0).to(depth.dtype), (v - 0.5 - y0).to(depth.dtype)
    outside = ~(valid & (z > 1e-6))
    x0 = x0.masked_fill_(outside, -_PAD).clamp_(-_PAD, w).add_(_PAD).long()
    y0 = y0.masked_fill_(outside, -_PAD).clamp_(-_PAD, h).add_(_PAD).long()
    frame_starts = torch.arange(b, device=depth.device).view(b, 1, 1) * (grid.rows * grid.cols)
    slot = frame_starts + y0 * grid.cols + x0
    z = z.to(depth.dtype).masked_fill_(outside, 1.0).view(-1)
    weights = [torch.threshold_(w.view(-1), _MIN_WEIGHT, 0.0)  # tiny weights count for nothing
               for w in ((1 - ax) * (1 - ay), ax * (1 - ay), (1 - ax) * ay, ax * ay)]
    pairs = [(0, (weights[0], True), (weights[1], True)), (grid.cols, (weights[2], True), (weights[3], True))]
    return grid, z, slot.view(-1), pairs


# -- the z-buffer and the sums ------------------------------------------------------------------------------


def _accumulate(ws: _Workspace, color: torch.Tensor, z: torch.Tensor, slot: torch.Tensor, pairs, grid: _Grid,
                depth_tolerance: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The z-buffer and the two-layer sums of every slot.

    ``pairs`` holds the taps two by two, side by side: ``(offset, (weight, may_weigh_nothing), (weight, ...))``
    for the taps at ``slot + offset`` and ``slot + offset + 1``, each with its (N,) weight, and whether that may
    be 0 for some points (then those stay out of the z-buffer).

    Returns ``(sums (2, 2 size) complex, nearest (size,))``: per pair of channels ((r, g), (b, weight)), the
    weighted sums of the front layer (slots 0 .. size - 1) and of the back layer (size .. 2 size - 1); and the
    nearest depth at each slot (inf where no tap weighs anything).
    """
    n, size = z.numel(), grid.size
    dtype, device = z.dtype, z.device
    as_int, cdtype = _INT_OF_FLOAT[dtype], _complex(dtype)

    # A tap at ``offset`` from its slot is the slot itself in a view that starts ``offset`` further on.
    nearest = ws("nearest", (size,), dtype, device).fill_(torch.inf)
    key = ws("key", (n,), dtype, device)
    for offset, *taps in pairs:
        for side, (weight, may_weigh_nothing) in enumerate(taps):
            if may_weigh_nothing:  # z / 0 = inf: never the nearest (nor is 0 / 0 = NaN, its bits are above inf's)
                torch.div(z, torch.sign(weight, out=key), out=key)
            entering = key if may_weigh_nothing else z
            nearest.view(as_int)[offset + side:].scatter_reduce_(0, slot, entering.view(as_int), reduce="amin")
    # The limits of the front layer at slots s and s + 1, as one complex number: one gather serves two taps.
    limit = torch.mul(nearest, 1.0 + depth_tolerance, out=ws("limit", (size,), dtype, device))
    limits = torch.complex(limit[:-1], limit[1:], out=ws("limits", (size - 1,), cdtype, device))

    channels = (torch.complex(color[:, 0].reshape(n), color[:, 1].reshape(n), out=ws("rg", (n,), cdtype, device)),
                torch.complex(color[:, 2].reshape(n), _ones(n, device, dtype), out=ws("bw", (n,), cdtype, device)))
    sums = ws("sums", (2, 2 * size), cdtype, device).zero_()
    gathered = ws("gathered", (n,), cdtype, device)
    target = ws("target", (n,), torch.int64, device)
    complex_weight = ws("complex_weight", (n,), cdtype, device)
    weighted = ws("weighted", (n,), cdtype, device)
    for offset, *taps in pairs:
        torch.index_select(limits[offset:], 0, slot, out=gathered)
        for side, (weight, _) in enumerate(taps):
            # The back layer lives in slots size .. 2 size - 1: target = slot + size (z > limit).
            torch.gt(z, torch.view_as_real(gathered)[:, side], out=target)
            torch.add(slot, target, alpha=size, out=target)
            complex_weight.copy_(weight)  # w + 0i: (x + iy) (w + 0i) = xw + iyw exactly, for finite x and y
            for pair, layers in zip(channels, sums, strict=True):
                layers[offset + side:].scatter_add_(0, target, torch.mul(pair, complex_weight, out=weighted))
    return sums, nearest


def _compose(ws: _Workspace, sums: torch.Tensor, nearest: torch.Tensor, grid: _Grid, coverage_threshold: float,
             rgba: torch.Tensor, depth: torch.Tensor, dropout: torch.Tensor) -> None:
    """Front layer over back layer, written into ``rgba`` (B, 4, H, W); ``depth`` (B, H, W) is the nearest depth,
    and ``dropout`` (B, H, W) where the coverage is under the threshold.

    A layer's colour is its mean colour times its coverage ``min(weight, 1)``: its sums times
    ``min(weight, 1) / weight = 1 / max(weight, 1)``; the back layer's coverage counts only where the front one
    leaves room. The weight rides along as the fourth channel, and comes out as the coverage, alpha.
    """
    size, dtype, device = grid.size, nearest.dtype, nearest.device
    layers = torch.view_as_real(sums).view(2, 2, size, 2)  # [pair, layer, slot, real/imaginary]
    weight_front, weight_back = layers[1, 0, :, 1], layers[1, 1, :, 1]
    room = torch.clamp(weight_front, max=1.0, out=ws("room", (size,), dtype, device)).neg_().add_(1.0)
    factor_front = torch.clamp(weight_front, min=1.0, out=ws("factor_front", (size,), dtype, device)).reciprocal_()
    factor_back = torch.clamp(weight_back, min=1.0, out=ws("factor_back", (size,), dtype, device))
    factor_back = torch.div(room, factor_back, out=factor_back)
    # rgba[b, 2 pair + part] = sums[pair, layer, b, row, col, part] over both layers.
    out = rgba.unflatten(1, (2, 2)).permute(1, 0, 3, 4, 2)
    front, back = (grid.crop(layers[:, layer].movedim(-1, 0)).movedim(0, -1) for layer in (0, 1))
    torch.mul(front, grid.crop(factor_front)[..., None], out=out)
    out.addcmul_(back, grid.crop(factor_back)[..., None])
    torch.lt(rgba[:, 3], coverage_threshold, out=dropout)
    depth.copy_(grid.crop(nearest))
