"""Forward splatting of RGB-D frames into a stereo eye, in torch (CPU or CUDA).

Each source pixel is unprojected with its depth (seed 000, eq. 1-3), moved into the eye's camera
(:mod:`stereoforge.rig`), projected, and splatted bilinearly onto the four nearest target pixels (seed 002's
forward splatting). Where several points land on one pixel, the nearest surface wins: contributions within
``depth_tolerance`` of the nearest depth at that pixel form the front layer; everything farther forms a back
layer that only shows through where the front layer covers less than the whole pixel (front-to-back "over"
compositing of two layers). This keeps depth edges antialiased like a real render, instead of either
hard-overwriting (aliasing) or blending foreground into background (seed 002's sqrt(2)^disparity weights).

Pixels whose total coverage stays under ``coverage_threshold`` are dropout: no point reached them.

How it is made fast (the results are those of the plain formulation, to float rounding):

* Every point gets one integer *slot*, its top-left tap, in a target grid padded by two pixels on each side;
  its taps are fixed offsets from the slot (``+1`` right, ``+row`` down). A point that lands outside the image,
  or has no depth, is clamped into the padding, which is cut off at the end: no tap needs a bounds test.
* Per tap: one ``amin`` scatter for the nearest depth, run on the float bits read as integers (non-negative
  IEEE floats order like their bit patterns, and integer ``amin`` is several times faster); one gather to put
  each contribution in the front or the back layer; three ``scatter_add`` passes for five sums (weight, and
  weighted r, g, b, depth) in both layers at once: channels travel in pairs as complex numbers, whose addition
  is two float additions, so one index read serves two channels.
* Scratch tensors are kept between calls (per thread), so a clip costs no allocation, and no page faults, per
  batch. On a GPU the whole batch goes at once; on the CPU, chunks of at most about half a million points
  (whole frames, or blocks of rows when rows are kept), with torch ops on one thread (see
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

from .camera import Intrinsics, project, unproject
from .rig import EyeView

#: Bilinear weights at or under this do not count: not for coverage, and not for the nearest depth.
_MIN_WEIGHT = 1e-6
#: Padding of the target grid, in pixels on each side: a clamped slot and its taps then stay in the padding.
_PAD = 2
#: On the CPU, points splatted together at most (a bound on scratch memory; smaller chunks cost more per-op
#: overhead than they win in cache).
_CPU_CHUNK_POINTS = 1 << 19


@dataclass
class EyeImage:
    """One eye for a batch of frames.

    Attributes:
        rgba: (B, 4, H, W) linear RGB premultiplied by alpha, and alpha = coverage in [0, 1].
        depth: (B, H, W) planar depth in the eye's camera (metres); +inf where nothing landed.
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
              general_path: bool = False) -> EyeImage:
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

    Returns:
        The eye as an :class:`EyeImage` of the same height and width. Frames are independent of each other:
        the result does not depend on how a clip is cut into batches.
    """
    b, _, h, w = color.shape
    if view.is_source:
        alpha = torch.ones_like(depth)
        rgba = torch.cat((color, alpha[:, None]), dim=1)
        return EyeImage(rgba, depth.clone(), torch.zeros(depth.shape, dtype=torch.bool, device=depth.device))

    m = view.source_to_eye
    rows_kept = not general_path and np.allclose(m[:3, :3], np.eye(3)) and m[1, 3] == 0 and m[2, 3] == 0
    dtype = color.dtype if color.dtype in _INT_OF_FLOAT else torch.float32  # sums of half floats drift
    out = EyeImage(torch.empty((b, 4, h, w), dtype=dtype, device=color.device),
                   torch.empty((b, h, w), dtype=dtype, device=color.device),
                   torch.empty((b, h, w), dtype=torch.bool, device=color.device))

    def splat_chunk(frames: slice, rows: slice) -> None:
        ws = _workspace()
        c, d = color[frames, :, rows].to(dtype), depth[frames, rows].to(dtype)
        if rows_kept:
            grid, z, slot, taps = _taps_rows_kept(ws, d, k, view)
        else:
            grid, z, slot, taps = _taps_general(d, k, view)
        sums = _accumulate(ws, c, z, slot, taps, grid, depth_tolerance)
        _compose(ws, sums, grid, coverage_threshold, out.rgba[frames, :, rows], out.depth[frames, rows],
                 out.dropout[frames, rows])

    with _single_threaded_ops(color.device):
        for frames, rows in _chunks(b, h, w, color.device, rows_kept):
            splat_chunk(frames, rows)
    if dtype != color.dtype:
        return EyeImage(out.rgba.to(color.dtype), out.depth.to(color.dtype), out.dropout)
    return out


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
    """(B, H, 1) int64: the first slot of each image row in a grid with ``stride`` slots per row."""
    return (torch.arange(frames * height, device=device) * stride).view(frames, height, 1)


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

    Returns ``(grid, z, slot, taps)``: ``z`` (N,) depth, ``slot`` (N,) int64, ``taps`` [(offset, weight (N,))].
    """
    b, h, w = depth.shape
    n, dtype, device = depth.numel(), depth.dtype, depth.device
    grid = _Grid(b, h, w + 2 * _PAD, 0, _PAD, h, w)
    # Depth 0 for a point with none: its disparity is infinite (or NaN) and it goes into the padding.
    z = torch.nan_to_num(depth.reshape(n), nan=0.0, posinf=0.0, neginf=0.0, out=ws("z", (n,), dtype, device))
    z.clamp_(min=0.0)
    # The fraction comes from the disparity alone, not from j + disparity: smaller numbers, finer float steps.
    right = torch.div(k.fx * float(view.source_to_eye[0, 3]), z, out=ws("right", (n,), dtype, device))
    right.sub_(view.shift_px)
    x0 = torch.floor(right, out=ws("x0", (n,), dtype, device))
    right.sub_(x0)
    left = torch.neg(right, out=ws("left", (n,), dtype, device)).add_(1.0)
    x0.nan_to_num_(nan=-_PAD).view(b, h, w).add_(_columns(w, device, dtype)).clamp_(-_PAD, w).add_(_PAD)
    slot = ws("slot", (n,), torch.int64, device)
    slot.copy_(x0).view(b, h, w).add_(_row_starts(b, h, grid.cols, device))
    return grid, z, slot, [(0, left), (1, right)]


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
    row = grid.cols
    taps = [(0, (1 - ax) * (1 - ay)), (1, ax * (1 - ay)), (row, (1 - ax) * ay), (row + 1, ax * ay)]
    z = z.to(depth.dtype).masked_fill_(outside, 1.0)
    return grid, z.view(-1), slot.view(-1), [(offset, weight.view(-1)) for offset, weight in taps]


# -- the z-buffer and the sums ------------------------------------------------------------------------------


def _accumulate(ws: _Workspace, color: torch.Tensor, z: torch.Tensor, slot: torch.Tensor, taps, grid: _Grid,
                depth_tolerance: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The two-layer sums of every slot: ``(weights (2, size), pairs (2, 2, size) complex)``: per layer
    (front, back), the weight; and per pair ((r, g), (b, depth)) and layer, the weighted sums."""
    n, size = z.numel(), grid.size
    dtype, device = z.dtype, z.device
    as_int = _INT_OF_FLOAT[dtype]
    target = ws("target", (n,), torch.int64, device)
    scratch = ws("scratch", (n,), dtype, device)

    # A tap at ``offset`` from its slot is the slot itself in a view that starts ``offset`` further on.
    nearest = ws("nearest", (size,), dtype, device).fill_(torch.inf)
    for offset, weight in taps:
        torch.threshold_(weight, _MIN_WEIGHT, 0.0)  # tiny weights count for nothing
        # The depth of a contribution with no weight is z / 0 = inf: it is never the nearest.
        torch.div(z, torch.sign(weight, out=scratch), out=scratch)
        nearest.view(as_int)[offset:].scatter_reduce_(0, slot, scratch.view(as_int), reduce="amin")
    limit = nearest.mul_(1.0 + depth_tolerance)

    cdtype = _complex(dtype)
    pairs = (torch.complex(color[:, 0].reshape(n), color[:, 1].reshape(n), out=ws("rg", (n,), cdtype, device)),
             torch.complex(color[:, 2].reshape(n), z, out=ws("bz", (n,), cdtype, device)))
    weighted = ws("weighted", (n,), cdtype, device)
    complex_weight = ws("complex_weight", (n,), cdtype, device)
    back = ws("back", (n,), torch.bool, device)
    back_index = ws("back_index", (n,), torch.int64, device)
    weight_sums = ws("weight_sums", (2 * size,), dtype, device).zero_()
    pair_sums = ws("pair_sums", (2, 2 * size), cdtype, device).zero_()
    # Explicit conversions into kept tensors below: an op on mixed dtypes would convert into a new one each time.
    for offset, weight in taps:
        torch.gt(z, torch.index_select(limit[offset:], 0, slot, out=scratch), out=back)
        # The back layer lives in slots size .. 2 size - 1.
        layered = torch.add(slot, back_index.copy_(back), alpha=size, out=target)
        weight_sums[offset:].scatter_add_(0, layered, weight)
        complex_weight.copy_(weight)  # w + 0i: (x + iy) (w + 0i) = xw + iyw exactly, for finite x and y
        for pair, sums in zip(pairs, pair_sums, strict=True):
            sums[offset:].scatter_add_(0, layered, torch.mul(pair, complex_weight, out=weighted))
    return weight_sums.view(2, size), pair_sums.view(2, 2, size)


def _compose(ws: _Workspace, sums: tuple[torch.Tensor, torch.Tensor], grid: _Grid, coverage_threshold: float,
             rgba: torch.Tensor, depth: torch.Tensor, dropout: torch.Tensor) -> None:
    """Front layer over back layer, written into ``rgba`` (B, 4, H, W), ``depth`` and ``dropout`` (B, H, W)."""
    weights, pairs = grid.crop(sums[0]), grid.crop(torch.view_as_real(sums[1]).movedim(-1, -2))
    # weights[layer], pairs[pair, layer, real/imaginary]: (B, H, W) views.
    shape, dtype, device = depth.shape, depth.dtype, depth.device
    a_front = torch.clamp(weights[0], max=1.0, out=ws("a_front", shape, dtype, device))
    a_back = torch.clamp(weights[1], max=1.0, out=ws("a_back", shape, dtype, device))
    a_back.addcmul_(a_back, a_front, value=-1.0)  # what the front layer leaves: (1 - a_front) min(t1, 1)
    torch.add(a_front, a_back, out=rgba[:, 3])
    torch.lt(rgba[:, 3], coverage_threshold, out=dropout)
    # A layer's colour is its mean colour times its coverage: one factor per layer.
    f_front = torch.clamp(weights[0], min=1e-12, out=ws("f_front", shape, dtype, device))
    f_front = torch.div(a_front, f_front, out=f_front)
    f_back = torch.clamp(weights[1], min=1e-12, out=ws("f_back", shape, dtype, device))
    f_back = torch.div(a_back, f_back, out=f_back)
    for c in range(3):
        pair, part = divmod(c, 2)
        torch.mul(pairs[pair, 0, part], f_front, out=rgba[:, c])
        rgba[:, c].addcmul_(pairs[pair, 1, part], f_back)
    # Depth: the front layer's mean, else the back layer's, else inf. A layer with no weight has 0 / 0 = NaN,
    # made inf here; where both layers are there, the front one is the nearer.
    front = torch.div(pairs[1, 0, 1], weights[0], out=ws("a_front", shape, dtype, device))
    back = torch.div(pairs[1, 1, 1], weights[1], out=ws("a_back", shape, dtype, device))
    torch.minimum(front.nan_to_num_(torch.inf, torch.inf), back.nan_to_num_(torch.inf, torch.inf), out=depth)
