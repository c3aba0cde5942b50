"""Inpainting of dropout: the pluggable stage that fills the pixels no point reached.

An inpainter fills one eye of a clip, frame after frame. It is made from a :class:`Clip` (where it reads the
eye's frames, and the fills an earlier run wrote, for resuming) and filled frame by frame with ``fill(n)``,
which returns frame ``n`` as uint8 sRGB codes (H, W, 3): what the pipeline writes. Frames are numbered from 1
and filled in increasing order; a run may start anywhere (a resumed job starts after the frames it finished).
Register new ones in :data:`INPAINTERS` (name -> ``factory(clip)``).

The inpainters here need no model weights:

* ``background`` (the default): a hole is background that the source camera never saw, so it is filled with
  background, from other frames where they saw it, and the same way from frame to frame. Per frame:

  1. *Cracks*: thin dropout (at most two pixels) inside one surface, whose covered neighbours all have about
     the same depth, is left by points that spread apart on slanted or near surfaces; it is no disocclusion,
     and takes the mean of those neighbours.
  2. *The background side* of each remaining hole: along its row (the eyes are offset horizontally, so holes
     open horizontally), the farther of its two nearest covered neighbours; at the frame border, the one
     there is. The foreground side never fills a hole. A wider gap whose two sides lie on one surface is no
     disocclusion either: it blends its two sides.
  3. *Other frames*: where the camera or objects move, the background hidden here is often seen in nearby
     frames. Dense optical flow (OpenCV's DIS) from this eye to each eye up to ``radius`` frames either side
     says where each hole pixel lies there; inside a hole, where no flow can be measured, a pixel moves as
     its background side does (the median flow of the covered pixels just beyond it along the row). Flow is
     measured between the two frames directly, not chained through the frames between: there the
     background may be hidden, and the flow at its place is the foreground's; it is measured once for each
     pair of frames, at about ``flow_rows`` rows, and inverted for the way back. A hole pixel takes what
     another frame shows at that place if it is a clean covered pixel (not at an edge) and background:
     nearer the hole's background than its foreground, in disparity. Frames average, nearer ones weighing
     more.
  4. *The previous frame's fill*, where no frame saw the background: moved here by the same flow, where it
     was a hole too, blended (``persistence``) with a fill of this frame from the background side alone (the
     background-side neighbour continued along the row, smoothed a little down the columns; in a strip at
     the frame's edge, continued along the background's structure where it has a clear orientation, see
     :mod:`.structure`; in a disocclusion, half of it exemplars: the background's continuations, found in
     the hole's depth band beyond its background side, that agree with what surrounds each pixel, see
     :mod:`.exemplar`; then smoothed the more the deeper into the hole). The same background behind a still
     object is filled the same way in every frame, and a fill that moves follows the background.

  Dropout that the edge of a covered surface covers in part (coverage under half) keeps that part over the
  fill: an antialiased edge stays antialiased. The state carried from frame to frame is the previous
  output itself, which a resumed run reads back from disk: resuming gives the frames an uninterrupted run
  gives.

* ``telea``: OpenCV's Telea fast-marching inpainting, frame by frame: the usual baseline.
* ``none``: leaves dropout black (for checking the raw eyes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import cv2
import numba
import numpy as np

from .exemplar import exemplar_estimates
from .io.images import linear_to_srgb, srgb_integers_to_linear, srgb_to_linear, to_uint8_srgb
from .structure import structure_sides


@dataclass
class EyeFrame:
    """One eye of one frame, as the eyes stage made it.

    Attributes:
        rgb: (H, W, 3) float32 linear RGB, straight (not premultiplied); undefined under dropout.
        alpha: (H, W) float32 coverage in [0, 1].
        depth: (H, W) float32 planar depth in the eye's camera (metres), +inf where nothing landed.
        dropout: (H, W) bool, True where the pixel must be filled.
    """

    rgb: np.ndarray
    alpha: np.ndarray
    depth: np.ndarray
    dropout: np.ndarray


class Clip(Protocol):
    """Where an inpainter reads one eye of a clip."""

    def eye(self, n: int) -> EyeFrame | None:
        """Frame ``n`` (from 1), or None past either end of the clip."""

    def filled(self, n: int) -> np.ndarray | None:
        """Frame ``n`` as an earlier run filled it (uint8 sRGB (H, W, 3)), or None when there is none."""


class Inpainter(Protocol):
    def fill(self, n: int) -> np.ndarray:
        """Frame ``n`` filled: uint8 sRGB (H, W, 3); covered pixels are the eye's own."""


# -- frame by frame -----------------------------------------------------------------------------------------


def fill_none(rgb: np.ndarray, dropout: np.ndarray, depth: np.ndarray) -> np.ndarray:
    out = rgb.copy()
    out[dropout] = 0.0
    return out


def fill_telea(rgb: np.ndarray, dropout: np.ndarray, depth: np.ndarray) -> np.ndarray:
    out = rgb.copy()
    if not dropout.any():
        return out
    # OpenCV inpaints 8-bit colour images: inpaint the sRGB-encoded picture, keep covered pixels exactly.
    srgb = to_uint8_srgb(rgb)
    filled = cv2.inpaint(srgb, dropout.astype(np.uint8), 3, cv2.INPAINT_TELEA)
    out[dropout] = srgb_integers_to_linear(filled)[dropout]
    return out


class PerFrame:
    """An inpainter that fills each frame on its own with ``fn(rgb, dropout, depth) -> rgb`` (linear RGB)."""

    def __init__(self, fn: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray], clip: Clip):
        self.fn = fn
        self.clip = clip

    def fill(self, n: int) -> np.ndarray:
        frame = _require(self.clip, n)
        return to_uint8_srgb(self.fn(frame.rgb, frame.dropout, frame.depth))


def _per_frame(fn) -> Callable[[Clip], PerFrame]:
    return lambda clip: PerFrame(fn, clip)


def _require(clip: Clip, n: int) -> EyeFrame:
    frame = clip.eye(n)
    if frame is None:
        raise IndexError(f"frame {n} is not in the clip")
    return frame


# -- shared pieces ------------------------------------------------------------------------------------------


def nearest_covered_along_rows(dropout: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each pixel, the column of the nearest covered pixel at or left of it, and at or right of it.

    Returns two (H, W) int32 arrays; -1 where no covered pixel lies to the left, W where none lies to the right.
    """
    h, w = dropout.shape
    cols = np.broadcast_to(np.arange(w, dtype=np.int32), (h, w))
    left = np.maximum.accumulate(np.where(dropout, -1, cols), axis=1)
    right = np.minimum.accumulate(np.where(dropout, w, cols)[:, ::-1], axis=1)[:, ::-1]
    return left, right


def push_pull(values: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """A smooth fill of every pixel from the weighted ones (Gortler et al.'s push-pull, on Gaussian pyramids).

    Args:
        values: (H, W, C) float32 (C <= 4).
        weight: (H, W) float32 in [0, 1]; 0 = unknown.

    Returns:
        (H, W, C) float32: where the weight is 1, the value itself; elsewhere a blend of the local weighted
        mean and the coarser levels' estimate, by how much weight the neighbourhood holds. Zero when no pixel
        has weight.
    """
    w = weight.astype(np.float32)
    v = values.astype(np.float32) * w[..., None]
    levels = [(w, v)]
    while min(w.shape) > 1:
        w, v = cv2.pyrDown(w), _channels(cv2.pyrDown(v), v.shape[-1])
        levels.append((w, v))
    est = np.zeros_like(levels[-1][1])
    for w, v in reversed(levels):
        up = _channels(cv2.resize(est, (w.shape[1], w.shape[0]), interpolation=cv2.INTER_LINEAR), v.shape[-1])
        mean = v / np.maximum(w, 1e-12)[..., None]
        # A neighbourhood a quarter covered is trusted fully: its mean is already a fair local estimate, and
        # coarser levels reach farther, to pixels that belong to other surfaces.
        trust = np.clip(w * 4.0, 0.0, 1.0)[..., None]
        est = trust * mean + (1.0 - trust) * up
    return est


def _channels(image: np.ndarray, c: int) -> np.ndarray:
    """OpenCV drops the channel axis of one-channel images: put it back."""
    return image.reshape(*image.shape[:2], c)


# -- the default: background, from other frames first -------------------------------------------------------


@dataclass
class _Frame:
    """What the background inpainter keeps of one eye frame."""

    srgb: np.ndarray  # (H, W, 3) float32 sRGB in [0, 1]; cracks filled, holes the background-side fill
    rows: np.ndarray  # (N,) int: the rows of the holes' pixels ...
    cols: np.ndarray  # (N,) int: ... and their columns
    side: np.ndarray  # (N,) int: a disocclusion pixel's background-side column; -1 for other hole pixels
    band: np.ndarray  # (H, W) bool: covered pixels in the holes' depth band (see :func:`_background_band`)
    edge: np.ndarray  # (H, W) float32: coverage of dropout pixels at the edge of a covered surface, else 0
    blank: np.ndarray  # (H, W) float32 1/0: holes whose output is the fill alone
    source: np.ndarray  # (H, W) float32 1/0: a clean covered pixel other frames may copy
    inv_depth: np.ndarray  # (H, W) float32 1 / depth; 0 in holes
    inv_limit: np.ndarray  # (N,) float32: a pixel copied into the hole pixel must have 1 / depth under this
    grey: np.ndarray  # (H, W) uint8: the frame with holes filled, for optical flow
    flow_from: _FlowSamples  # where the flow of the holes is read (see :func:`_flow_samples`)


class BackgroundInpainter:
    """The default inpainter (see the module docstring): background from other frames, then from the
    background side, stable over time.

    Args:
        clip: where the eye's frames are read.
        radius: frames either side searched for background that this frame does not see.
        persistence: weight of the previous frame's fill, moved with the background, against this frame's
            background-side fill, where no frame saw the background (0 = fill each frame on its own).
        crack_tolerance: relative depth range of the covered neighbours within which thin dropout counts as a
            crack in one surface.
        flow_rows: the optical flow's finest level is about this many rows high (halving the frame until it is
            within a factor of 1.4): finer costs much more time and gains little for the smooth motion of
            backgrounds.
    """

    def __init__(self, clip: Clip, radius: int = 6, persistence: float = 0.8, crack_tolerance: float = 0.08,
                 flow_rows: int = 135):
        if radius < 0 or not 0.0 <= persistence <= 1.0 or crack_tolerance < 0 or flow_rows < 1:
            raise ValueError(f"radius {radius}, persistence {persistence}, crack_tolerance {crack_tolerance}, "
                             f"flow_rows {flow_rows}: give radius >= 0, persistence in [0, 1], crack_tolerance "
                             ">= 0 and flow_rows >= 1")
        self.clip = clip
        self.radius = radius
        self.flow_rows = flow_rows
        self.persistence = persistence
        self.crack_tolerance = crack_tolerance
        self._frames: dict[int, _Frame | None] = {}
        self._flows: dict[tuple[int, int], np.ndarray] = {}  # (n, m) -> (N, 2) flow at the holes of n
        self._dense: dict[tuple[int, int], np.ndarray] = {}  # (a, b), a < b -> (H, W, 2) flow from a to b
        self._previous: tuple[int, np.ndarray] | None = None  # (n, its output)
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)

    # -- the frame loop

    def fill(self, n: int) -> np.ndarray:
        self._forget(n)
        eye = _require(self.clip, n)
        f = self._frame(n)
        out = f.srgb.copy()
        rows, cols = f.rows, f.cols
        if rows.size:
            # From here on, only the hole pixels: their positions (N, 1, 2), as cv2.remap reads them.
            at = np.stack((cols, rows), axis=-1).astype(np.float32)[:, None, :]
            colour, weight = np.zeros((rows.size, 3), np.float32), np.zeros(rows.size, np.float32)
            for k in range(1, self.radius + 1):
                for m in (n - k, n + k):
                    other = self._frame(m)
                    if other is not None:  # nearer frames count more: their flow is surer
                        where = at + self._flow_to(n, m)[:, None, :]
                        self._gather(f.inv_limit, other, where, 0.5 ** (k - 1), colour, weight)
            seen = weight > 0
            out[rows[seen], cols[seen]] = colour[seen] / weight[seen][:, None]
            if not seen.all():
                out[rows[~seen], cols[~seen]] = self._made_up(n, f, at[~seen], ~seen, out)
        # Covered pixels are the eye's own, encoded exactly as the other inpainters encode them (``f.srgb`` holds
        # them as :func:`to_uint8_srgb` encodes them before rounding); dropout that the edge of a covered surface
        # covers in part keeps that part, over the fill.
        codes = np.rint(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)
        part = f.edge > 0.0
        if part.any():
            a = f.edge[part][:, None]
            codes[part] = to_uint8_srgb(eye.rgb[part] * a + (1.0 - a) * srgb_to_linear(out[part]))
        self._previous = (n, codes)
        return codes

    def _made_up(self, n: int, f: _Frame, at: np.ndarray, todo: np.ndarray, out: np.ndarray) -> np.ndarray:
        """The fill of hole pixels that no other frame saw: the previous frame's output moved here by the flow,
        where that was a hole filled alone, blended by ``persistence`` with this frame's own fill: the
        background-side fill, and in a disocclusion, half of it the background's continuations that agree with
        what surrounds each pixel (:func:`_exemplar_blend`; what other frames showed of the hole counts there).

        Args:
            n: the frame; f: its analysis.
            at: (M, 1, 2) positions of the pixels to fill; todo: (N,) bool, which of the frame's hole pixels
                they are.
            out: (H, W, 3) the frame so far: sRGB in [0, 1], the hole pixels other frames saw filled.

        Returns:
            (M, 3) sRGB in [0, 1].
        """
        rows, cols, side = f.rows[todo], f.cols[todo], f.side[todo]
        synth = f.srgb[rows, cols]
        opened = side >= 0
        if opened.any():
            known = f.band.copy()
            known[f.rows[~todo], f.cols[~todo]] = True
            synth[opened] = _exemplar_blend(out, known, rows[opened], cols[opened], side[opened])
            synth[opened] = _smooth_by_distance(synth[opened], rows[opened], cols[opened],
                                                np.abs(cols[opened] - side[opened]))
        before = self._frame(n - 1)
        previous = self._previous[1] if self._previous and self._previous[0] == n - 1 else self.clip.filled(n - 1)
        if previous is None or before is None or self.persistence == 0.0:
            return synth
        where = at + self._flow_to(n, n - 1)[todo][:, None, :]
        # A fill that moves in from beyond the frame's edge continues the edge's fill.
        edge = cv2.BORDER_REPLICATE
        moved = _sample(previous.astype(np.float32) / 255.0, where, border=edge)
        # Only where the previous output was the fill alone: an antialiased edge would be added in again and
        # again.
        keep = self.persistence * (_sample(before.blank, where, border=edge) > 0.5)[:, None]
        return keep * moved + (1.0 - keep) * synth

    @staticmethod
    def _gather(inv_limit: np.ndarray, other: _Frame, where: np.ndarray, weight: float, colour: np.ndarray,
                total: np.ndarray) -> None:
        """Add what ``other`` sees at positions ``where`` (N, 1, 2), with ``weight``, to the hole pixels it
        shows background of: a clean pixel whose inverse depth is under the hole pixel's ``inv_limit`` (N,)."""
        ok = (_sample(other.source, where) > 0.999) & (_sample(other.inv_depth, where, cv2.INTER_NEAREST)
                                                       < inv_limit)
        if ok.any():
            colour[ok] += weight * _sample(other.srgb, where[ok])
            total[ok] += weight

    def _flow_to(self, n: int, m: int) -> np.ndarray:
        """(N, 2) flow from frame ``n`` to frame ``m`` at the hole pixels of ``n``: the background side's flow.

        Measured from one frame to the other directly, not chained through the frames between: there, the
        background a hole pixel shows may be hidden, and the flow found at its place is the foreground's.
        """
        flow = self._flows.get((n, m))
        if flow is None:
            flow = self._flows[(n, m)] = _complete(self._dense_flow(n, m), self._frame(n))
        return flow

    def _dense_flow(self, n: int, m: int) -> np.ndarray | _InverseFlow:
        """(H, W, 2) flow from frame ``n`` to frame ``m``, measured once for each pair of frames: from the earlier
        to the later, and the other way round by inverting it (which costs one resampling, not a measurement,
        and only at the pixels read)."""
        a, b = min(n, m), max(n, m)
        flow = self._dense.get((a, b))
        if flow is None:
            first, second = self._frame(a), self._frame(b)
            self._dis.setFinestScale(max(0, round(np.log2(first.grey.shape[0] / self.flow_rows))))
            flow = self._dense[(a, b)] = self._dis.calc(first.grey, second.grey, None)
        return flow if n == a else _InverseFlow(flow)

    def _forget(self, n: int) -> None:
        """Drop what filling frame ``n`` and later ones no longer needs."""
        for m in [m for m in self._frames if m < n - max(self.radius, 1)]:
            del self._frames[m]
        for key in [key for key in self._flows if key[0] < n]:
            del self._flows[key]
        for key in [key for key in self._dense if key[1] < n]:
            del self._dense[key]

    # -- one frame's analysis

    def _frame(self, n: int) -> _Frame | None:
        if n not in self._frames:
            eye = self.clip.eye(n)
            self._frames[n] = None if eye is None else self._analyse(eye)
        return self._frames[n]

    def _analyse(self, eye: EyeFrame) -> _Frame:
        srgb = linear_to_srgb(np.clip(eye.rgb, 0.0, 1.0)).astype(np.float32)
        dropout = eye.dropout
        depth = np.where(dropout, np.inf, eye.depth).astype(np.float32)
        srgb, depth, holes = _fill_cracks(srgb, depth, eye.alpha, dropout, self.crack_tolerance)
        inv_depth = np.where(holes, 0.0, 1.0 / np.maximum(depth, 1e-6)).astype(np.float32)
        rows, cols = np.nonzero(holes)
        nearest = nearest_covered_along_rows(holes)
        inv_limit, bg_col, other_col = _background_side(inv_depth, nearest, rows, cols, self.crack_tolerance)
        srgb = _background_fill(srgb, inv_depth, holes, nearest, rows, cols, bg_col, other_col)
        grey = cv2.cvtColor(np.rint(srgb * 255.0).astype(np.uint8), cv2.COLOR_RGB2GRAY)
        edge = _edge_coverage(eye.alpha, eye.depth, dropout)
        blank = (holes & (edge <= 0.0)).astype(np.float32)
        side = np.where(other_col < 0, bg_col, -1)
        opened = side >= 0
        band = _background_band(inv_depth, holes, rows[opened], cols[opened], side[opened])
        return _Frame(srgb, rows, cols, side, band, edge, blank, _clean_source(eye.alpha, dropout, inv_depth),
                      inv_depth, inv_limit, grey, _flow_samples(rows, cols, bg_col, inv_depth, holes))


#: cv2.remap takes maps under 32767 pixels high: :func:`_sample` hands it the points in rows of this many.
_SAMPLE_ROW = 1024


def _sample(image: np.ndarray, where: np.ndarray, interpolation: int = cv2.INTER_LINEAR,
            border: int = cv2.BORDER_CONSTANT) -> np.ndarray:
    """``image`` (H, W[, C]) at positions ``where`` (N, 1, 2) (x, y): (N[, C]); 0 outside the image (or the edge
    value, with replicate). Any number of points: they go to cv2.remap in rows of :data:`_SAMPLE_ROW` (the last
    padded), each point resampled on its own."""
    count = where.shape[0]
    if count == 0:
        return np.zeros((0, *image.shape[2:]), image.dtype)
    points = np.zeros((-(-count // _SAMPLE_ROW) * _SAMPLE_ROW, 2), np.float32)
    points[:count] = where.reshape(count, 2)
    out = cv2.remap(image, points.reshape(-1, _SAMPLE_ROW, 2), None, interpolation, borderMode=border,
                    borderValue=0)
    return out.reshape(-1, *image.shape[2:])[:count]


def _fill_cracks(srgb: np.ndarray, depth: np.ndarray, alpha: np.ndarray, dropout: np.ndarray,
                 tolerance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fill dropout at most two pixels thick whose covered neighbours (5 x 5) all lie on one surface.

    Returns ``(srgb, depth, holes)``: colour and depth with the cracks filled, and the dropout left.
    """
    thin = dropout & (cv2.morphologyEx(dropout.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) == 0)
    rows, cols = np.nonzero(thin)
    if rows.size == 0:
        return srgb, depth, dropout
    # Worked out over the thin dropout's bounding box and the 5 x 5 neighbourhood its pixels read (thin dropout
    # is a few pixels here and there), which gives them the values the whole frame's filters give.
    h, w = dropout.shape
    box = slice(max(rows.min() - 2, 0), min(rows.max() + 3, h)), slice(max(cols.min() - 2, 0), min(cols.max() + 3, w))
    covered, thin, boxed_depth = ~dropout[box], thin[box], depth[box]
    kernel = np.ones((5, 5), np.uint8)
    finite = np.where(covered, boxed_depth, 0.0).astype(np.float32)
    far = cv2.dilate(finite, kernel)
    near = cv2.erode(np.where(covered, boxed_depth, np.float32(3e38)).astype(np.float32), kernel)
    crack = thin & (far > 0) & (far <= near * (1.0 + tolerance))
    if not crack.any():
        return srgb, depth, dropout
    weight = np.where(covered, alpha[box], 0.0).astype(np.float32)
    norm = np.maximum(cv2.GaussianBlur(weight, (5, 5), 1.0), 1e-12)
    colour = cv2.GaussianBlur(srgb[box] * weight[..., None], (5, 5), 1.0) / norm[..., None]
    mean_depth = cv2.GaussianBlur(finite * weight, (5, 5), 1.0) / norm
    srgb, depth, holes = srgb.copy(), depth.copy(), dropout.copy()
    srgb[box][crack], depth[box][crack], holes[box][crack] = colour[crack], mean_depth[crack], False
    return srgb, depth, holes


def _background_side(inv_depth: np.ndarray, nearest: tuple[np.ndarray, np.ndarray], rows: np.ndarray,
                     cols: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which depths count as background for the hole pixels ``rows``, ``cols`` (N,), and where their background
    side is (``nearest``: :func:`nearest_covered_along_rows` of the holes). Worked out at the hole pixels only:
    they are a few percent of the frame.

    Returns ``(inv_limit, bg_col, other_col)``, (N,) each: the largest inverse depth a pixel copied into it
    may have (halfway, in disparity, between the hole's background and foreground sides: the farther and
    the nearer of its nearest covered neighbours along the row; 10 % nearer than the background at the frame
    border, where only one side is known); the column of the background side (-1 for none: a row with no
    covered pixel); and the column of the other side where both sides lie on one surface (within
    ``tolerance`` in inverse depth: a gap inside a surface, not a disocclusion), else -1.
    """
    w = inv_depth.shape[1]
    left, right = nearest[0][rows, cols], nearest[1][rows, cols]
    has_left, has_right = left >= 0, right < w
    inv_l = np.where(has_left, inv_depth[rows, left.clip(0, w - 1)], np.inf)
    inv_r = np.where(has_right, inv_depth[rows, right.clip(0, w - 1)], np.inf)
    inv_bg = np.minimum(inv_l, inv_r)  # the farther side (a missing side is "infinitely near")
    both = has_left & has_right
    inv_fg = np.where(both, np.maximum(inv_l, inv_r), inv_bg)
    limit = np.where(both, 0.5 * (inv_bg + inv_fg), 1.1 * inv_bg)
    inv_limit = np.maximum(limit, 1.05 * inv_bg)
    inv_limit[~(has_left | has_right)] = np.inf  # a row without covered pixels: nothing is known
    side = np.where(has_left & (~has_right | (inv_l <= inv_r)), left, np.where(has_right, right, -1))
    one_surface = both & (inv_fg <= (1.0 + tolerance) * inv_bg)
    return inv_limit, side, np.where(one_surface, left + right - side, -1)


def _background_fill(srgb: np.ndarray, inv_depth: np.ndarray, holes: np.ndarray,
                     nearest: tuple[np.ndarray, np.ndarray], rows: np.ndarray, cols: np.ndarray, bg_col: np.ndarray,
                     other_col: np.ndarray) -> np.ndarray:
    """``srgb`` with each hole pixel filled from its background side: disocclusions open along rows, and the
    background next to a hole along its row is the best guess of what the hole hides; the foreground on the
    other side never enters. A gap inside one surface (``other_col`` >= 0: both sides on it) is no
    disocclusion: it blends its two sides by distance, as a crack does.

    A side's colour is the mean of the first pixels from its neighbour outwards along the row that lie on the
    neighbour's surface (see :func:`_side_colour`). In a strip at the frame's edge (one side only), the side is
    where the background's isophote through the pixel meets the covered pixels (:func:`.structure_sides`):
    slanted structure continues slanted. The fill is then smoothed a little down the columns, among
    hole pixels only, so rows do not streak. Rows with no covered pixel take a fill from all around
    (push-pull).

    ``rows``, ``cols``, ``bg_col``, ``other_col`` (N,): the hole pixels and their sides (:func:`_background_side`);
    ``nearest``: :func:`nearest_covered_along_rows` of the holes.
    """
    fill = srgb.copy()
    if rows.size == 0:
        return fill
    known = bg_col >= 0
    r, c, c0 = rows[known], cols[known], bg_col[known]
    strip = (nearest[0][r, c] < 0) | (nearest[1][r, c] >= holes.shape[1])
    read_r, read_c0 = r.copy(), c0.copy()
    if strip.any():  # at the frame's edge: continue the background's structure, not only its row
        grey = cv2.cvtColor(srgb, cv2.COLOR_RGB2GRAY)
        read_r[strip], read_c0[strip] = structure_sides(grey, inv_depth, holes, nearest, r[strip], c[strip],
                                                        c0[strip])
    colour = _side_colour(srgb, inv_depth, holes, read_r, c, read_c0)
    c1 = other_col[known]
    two = c1 >= 0
    if two.any():
        # Linear along the row between the two sides: each weighs by the distance to the other.
        d0, d1 = np.abs(c[two] - c0[two])[:, None], np.abs(c1[two] - c[two])[:, None]
        colour[two] = (d1 * colour[two] + d0 * _side_colour(srgb, inv_depth, holes, r[two], c[two], c1[two])) / (
            d0 + d1)
    fill[r, c] = colour
    if not known.all():
        rest_r, rest_c = rows[~known], cols[~known]
        fill[rest_r, rest_c] = push_pull(srgb, (~holes).astype(np.float32))[rest_r, rest_c]
    # Zero outside the holes (``np.zeros`` costs nothing where the blur's boxes never reach).
    inside, masked = np.zeros(holes.shape, np.float32), np.zeros(fill.shape, np.float32)
    inside[rows, cols], masked[rows, cols] = 1.0, fill[rows, cols]
    down = partial(cv2.GaussianBlur, ksize=(1, 5), sigmaX=0, sigmaY=1.0, borderType=cv2.BORDER_CONSTANT)
    fill[rows, cols] = _normalised_blur_at(masked, inside, rows, cols, down, reach=2)
    return fill


def _exemplar_blend(image: np.ndarray, known: np.ndarray, rows: np.ndarray, cols: np.ndarray, side: np.ndarray,
                    share: float = 0.5, ramp_px: tuple[int, int] = (1, 4)) -> np.ndarray:
    """(N, 3): the pixels ``rows``, ``cols`` of ``image`` (a disocclusion's, whose background side is column
    ``side``), blended with exemplar estimates from the ``known`` pixels (:mod:`stereoforge.exemplar`), made in
    order from the background side inwards. The estimates' share grows from 0 at ``ramp_px[0]`` pixels from the
    background side to ``share`` at ``ramp_px[1]``: next to it, the side's own colour continued is the surer
    guess (in the Blender scenes' narrow holes, exemplars there cost a little)."""
    order = np.argsort(np.abs(cols - side), kind="stable")
    estimate = np.empty((rows.size, 3), np.float32)
    estimate[order] = exemplar_estimates(image, known, rows[order], cols[order],
                                         np.where(side[order] > cols[order], 1, -1))
    start, full = ramp_px
    weight = share * np.clip((np.abs(cols - side) - start) / (full - start), 0.0, 1.0)[:, None]
    own = image[rows, cols]
    return np.where(np.isnan(estimate), own, weight * estimate + (1.0 - weight) * own)


def _background_band(inv_depth: np.ndarray, holes: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                     side: np.ndarray, band_px: int = 7) -> np.ndarray:
    """(H, W) bool: covered pixels no more than 10 % nearer than the background side of the hole pixels
    (``rows``, ``cols``, background side at column ``side``) within ``band_px`` of them: the hole's depth band,
    where its background may be found (the foreground never is)."""
    limit = np.zeros(holes.shape, np.float32)
    limit[rows, cols] = 1.1 * inv_depth[rows, side]
    near = cv2.dilate(limit, np.ones((2 * band_px + 1, 2 * band_px + 1), np.uint8))
    return ~holes & ((near == 0.0) | (inv_depth <= near))


def _smooth_by_distance(values: np.ndarray, rows: np.ndarray, cols: np.ndarray, distance: np.ndarray,
                        per_px: float = 0.15, sigmas: tuple[float, ...] = (1.0, 2.0, 4.0)) -> np.ndarray:
    """(N, 3): ``values`` of the hole pixels ``rows``, ``cols`` smoothed among themselves with a Gaussian of
    ``per_px * distance`` pixels at each (``distance``: from its background side): what a hole hides is less
    certain the deeper into it, and the mean of what it may be is the closer guess. Interpolated between the
    values themselves (width 0) and blurs of ``sigmas`` (in log sigma between those), capped at the last: wider,
    the fill of the real pairs' wide holes in textured ground (KITTI's road) lost more than the others gained,
    and narrow holes (the Blender scenes') keep their fill as it is."""
    width = per_px * distance
    used = [sigma for k, sigma in enumerate(sigmas) if k == 0 or sigmas[k - 1] < width.max()]
    logs = np.interp(np.log2(np.maximum(width, used[0])), np.log2(used), np.arange(1, len(used) + 1))
    at = np.where(width < used[0], width / used[0], logs)
    low = np.floor(at).astype(int)
    high = np.minimum(low + 1, len(used))
    t = (at - low)[:, None]
    # Blurred over the pixels' bounding box: outside it all is zero, as the constant border is.
    y, x = rows - rows.min(), cols - cols.min()
    inside = np.zeros((y.max() + 1, x.max() + 1), np.float32)
    inside[y, x] = 1.0
    image = np.zeros((*inside.shape, 3), np.float32)
    image[y, x] = values
    # Each blur only at the pixels that read it (the wider ones at the pixels deep in wide holes); the others
    # weigh it by 0.
    levels = np.zeros((len(used) + 1, rows.size, 3), np.float32)
    levels[0] = values
    for k, sigma in enumerate(used, start=1):
        need = (low == k) | (high == k)
        if need.any():
            blur = partial(cv2.GaussianBlur, ksize=(0, 0), sigmaX=sigma, borderType=cv2.BORDER_CONSTANT)
            # OpenCV's kernel for float images reaches round(8 sigma + 1) // 2 pixels.
            levels[k, need] = _normalised_blur_at(image, inside, y[need], x[need], blur, int(np.ceil(4.0 * sigma)) + 1)
    every = np.arange(rows.size)
    return (1.0 - t) * levels[low, every] + t * levels[high, every]


def _normalised_blur_at(image: np.ndarray, weight: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                        blur: Callable[[np.ndarray], np.ndarray], reach: int) -> np.ndarray:
    """(N, 3): ``blur`` (a filter with a constant border of 0 that reads no farther than ``reach`` pixels) of
    ``image`` (H, W, 3) over that of ``weight`` (H, W), at pixels ``rows``, ``cols``. Filtered over a box around
    each run of nearby columns the pixels occupy, ``reach`` beyond them: each pixel gets the value the whole
    image's filter gives it, for a fraction of the work when the pixels are a few strips of the frame."""
    out = np.empty((rows.size, 3), np.float32)
    order = np.argsort(cols, kind="stable")
    apart = max(2 * reach, 16)  # columns this far apart go in separate boxes; nearer ones share one
    for part in np.split(order, np.nonzero(np.diff(cols[order]) > apart)[0] + 1):
        r, c = rows[part], cols[part]
        r0, c0 = max(r.min() - reach, 0), max(c.min() - reach, 0)
        box = slice(r0, min(r.max() + reach + 1, weight.shape[0])), slice(c0, min(c.max() + reach + 1, weight.shape[1]))
        blurred, total = (blur(np.ascontiguousarray(a[box])) for a in (image, weight))
        out[part] = _channels(blurred, 3)[r - r0, c - c0] / np.maximum(total[r - r0, c - c0], 1e-12)[:, None]
    return out


def _side_colour(srgb: np.ndarray, inv_depth: np.ndarray, holes: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                 side: np.ndarray, taps: int = 4, decay_px: float = 1.0) -> np.ndarray:
    """(N, 3): for hole pixels at ``rows``, ``cols``, the colour of the covered neighbour at column ``side``
    continued outwards: the mean of the first ``taps`` pixels from it away from the hole that lie on its
    surface (within 5 % in inverse depth), weighted by ``exp(-distance / decay_px)``."""
    at = _outward(side, cols, np.arange(taps), holes.shape[1])
    inv, inv0 = inv_depth[rows[:, None], at], inv_depth[rows, side][:, None]
    weight = (~holes[rows[:, None], at] & (np.abs(inv - inv0) <= 0.05 * inv0)) * np.exp(
        -np.arange(taps, dtype=np.float32) / decay_px)
    weight[:, 0] = 1.0  # the neighbour itself always counts
    return (srgb[rows[:, None], at] * weight[..., None]).sum(axis=1) / weight.sum(axis=1)[:, None]


def _outward(side: np.ndarray, cols: np.ndarray, offsets: np.ndarray, width: int) -> np.ndarray:
    """(N, K) columns ``offsets`` away from column ``side`` (N,), on the side away from ``cols`` (N,) (the
    hole), clipped to the frame's ``width``."""
    step = np.where(side < cols, -1, 1)
    return np.clip(side[:, None] + step[:, None] * offsets, 0, width - 1)


def _edge_coverage(alpha: np.ndarray, depth: np.ndarray, dropout: np.ndarray) -> np.ndarray:
    """The coverage of dropout pixels that continue a covered surface: covered in part, and next to a covered
    pixel of about the same depth (an antialiased edge). Points that landed alone in a hole (flying pixels:
    a source pixel that mixed foreground and background) count for nothing. 0 elsewhere. Worked out at the
    pixels covered in part only: they are few."""
    edge = np.zeros(alpha.shape, np.float32)
    rows, cols = np.nonzero(dropout & (alpha > 0.0))
    if rows.size == 0:
        return edge
    h, w = alpha.shape
    own = depth[rows, cols]
    attached = np.zeros(rows.size, bool)
    with np.errstate(invalid="ignore"):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if dy or dx:
                    r, c = rows + dy, cols + dx
                    inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
                    r, c = r.clip(0, h - 1), c.clip(0, w - 1)
                    attached |= inside & ~dropout[r, c] & (np.abs(depth[r, c] - own) <= 0.05 * own)
    edge[rows[attached], cols[attached]] = alpha[rows[attached], cols[attached]]
    return edge


def _clean_source(alpha: np.ndarray, dropout: np.ndarray, inv_depth: np.ndarray) -> np.ndarray:
    """1 where a pixel is fully covered and not on a depth edge or next to a hole (no mixed colours; holes have
    inverse depth 0, so a pixel next to one is on an edge)."""
    square = np.ones((3, 3), np.uint8)
    hi, lo = cv2.dilate(inv_depth, square), cv2.erode(inv_depth, square)
    return ((alpha > 0.95) & ~dropout & (hi <= lo * 1.05)).astype(np.float32)


@dataclass
class _InverseFlow:
    """The flow back from where ``flow`` (H, W, 2) leads: at pixel p, -flow(q) with q = p - flow(p), the point
    that moves to p (one fixed-point step; exact for a constant flow, close for the smooth flow of a
    background). Worked out only where it is read, ``inverse[rows, cols]`` (N, ..., 2): the holes' samples
    are a few percent of the frame, and each pixel's value is the one the whole frame's resampling gives."""

    flow: np.ndarray

    def __getitem__(self, index: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        rows, cols = np.broadcast_arrays(*index)
        if rows.size == 0:
            return np.zeros((*rows.shape, 2), np.float32)
        ahead = self.flow[rows, cols]
        where = np.stack((cols.astype(np.float32) - ahead[..., 0], rows.astype(np.float32) - ahead[..., 1]), axis=-1)
        back = _sample(self.flow, where.reshape(-1, 1, 2), border=cv2.BORDER_REPLICATE)
        return -back.reshape(*rows.shape, 2)


@dataclass
class _FlowSamples:
    """Where the flow of a frame's hole pixels is read: the pixels of a hole's run along a row share their
    background side, so they share their samples, and runs are far fewer than pixels.

    ``run`` (N,): each hole pixel's run; ``tap_rows``, ``tap_cols`` (M,): the taps that count, run after run,
    and ``counts`` (U,) how many each run has; ``ok`` (U,) whether any counts; and ``rest_rows``/``rest_cols``:
    covered pixels (a sparse grid) whose median flow stands in where no tap counts (rare: a row with no
    covered pixel).
    """

    run: np.ndarray
    tap_rows: np.ndarray
    tap_cols: np.ndarray
    counts: np.ndarray
    ok: np.ndarray
    rest_rows: np.ndarray
    rest_cols: np.ndarray


def _flow_samples(rows: np.ndarray, cols: np.ndarray, start: np.ndarray, inv_depth: np.ndarray,
                  holes: np.ndarray) -> _FlowSamples:
    """The samples of :func:`_complete`: for each run of hole pixels, the covered pixels 4 to 18 columns
    beyond its background-side neighbour (every other one) that lie on that neighbour's surface. Next to the
    hole the measured flow is pulled by the fill of the hole (which differs from frame to frame) and by the
    foreground across it; patch-based flow spreads that over several pixels. Where the background side is a
    sliver (another surface, nearer, within 4 columns: background seen between two objects; about 1 % of the
    runs of the bench pipeline clip, in nearly every frame), its pixels from the neighbour out are the samples:
    pulled a little too, but the sliver's motion, where the frame's median is the surfaces' around it. ``start``
    (N,): each hole pixel's background-side column (-1 for none)."""
    w = inv_depth.shape[1]
    _, first, run = np.unique(rows.astype(np.int64) * (w + 1) + (start + 1), return_index=True,
                              return_inverse=True)
    run_rows, run_start, run_cols = rows[first], start[first], cols[first]
    taps, use = _surface_taps(inv_depth, run_rows, run_start, run_cols, np.arange(4, 20, 2))
    sliver = ~use.any(axis=1)
    if sliver.any():
        near, near_use = _surface_taps(inv_depth, run_rows, run_start, run_cols, np.arange(4))
        taps, use = np.concatenate((taps, near), axis=1), np.concatenate((use, near_use & sliver[:, None]), axis=1)
    count = use.sum(axis=1)
    sparse = np.zeros_like(holes)
    sparse[::8, ::8] = ~holes[::8, ::8]
    rest_rows, rest_cols = np.nonzero(sparse)
    return _FlowSamples(run.reshape(-1), np.broadcast_to(run_rows[:, None], taps.shape)[use], taps[use], count,
                        count > 0, rest_rows, rest_cols)


def _surface_taps(inv_depth: np.ndarray, rows: np.ndarray, side: np.ndarray, cols: np.ndarray,
                  offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The columns ``offsets`` beyond each run's background side ``side`` (away from its hole pixel at
    ``rows``, ``cols``; (U,) each), (U, K), and (U, K) bool whether each lies on the side's surface (within
    5 % in inverse depth; never a hole, whose inverse depth is 0, nor anything where there is no side, -1)."""
    taps = _outward(side, cols, offsets, inv_depth.shape[1])
    inv = inv_depth[rows[:, None], taps]
    return taps, (side[:, None] >= 0) & (np.abs(inv - inv_depth[rows, side.clip(0)][:, None]) <= 0.05 * inv)


def _complete(flow: np.ndarray | _InverseFlow, f: _Frame) -> np.ndarray:
    """The flow (N, 2) at the hole pixels of ``f``: that of their background side (it cannot be measured in
    the hole): the (lower) median of the samples of :func:`_flow_samples`; where a run has none, the median
    flow of the frame's covered pixels."""
    s = f.flow_from
    per_run = _lower_medians(np.ascontiguousarray(flow[s.tap_rows, s.tap_cols], np.float32), s.counts)
    if not s.ok.all():
        rest = flow[s.rest_rows, s.rest_cols]
        per_run[~s.ok] = np.median(rest, axis=0) if rest.size else 0.0
    return per_run[s.run].astype(np.float32)


@numba.njit(cache=True, nogil=True)
def _lower_medians(values, counts):  # pragma: no cover
    """(U, 2) float32: for each of ``counts`` (U,) groups of ``values`` (M, 2) (one after the other), the lower
    median of each column (the ``(count - 1) // 2``-th smallest); +inf for an empty group."""
    out = np.full((counts.size, 2), np.inf, np.float32)
    sorted_ = np.empty(max(counts.max(), 1) if counts.size else 1, np.float32)
    start = 0
    for u in range(counts.size):
        n = counts[u]
        for c in range(2):
            for i in range(n):  # insertion sort: a handful of values
                v = values[start + i, c]
                j = i
                while j > 0 and sorted_[j - 1] > v:
                    sorted_[j] = sorted_[j - 1]
                    j -= 1
                sorted_[j] = v
            if n > 0:
                out[u, c] = sorted_[(n - 1) // 2]
        start += n
    return out


# -- clips in memory and streams ----------------------------------------------------------------------------


@dataclass
class ClipReader:
    """A :class:`Clip` made of two functions (frame ``n`` -> eye frame, and -> an earlier run's fill)."""

    eye: Callable[[int], EyeFrame | None]
    filled: Callable[[int], np.ndarray | None]


class FrameList:
    """A :class:`Clip` over frames in memory (a list; frame ``n`` is ``frames[n - 1]``)."""

    def __init__(self, frames: Sequence[EyeFrame], filled: dict[int, np.ndarray] | None = None):
        self.frames = frames
        self.fills = filled or {}

    def eye(self, n: int) -> EyeFrame | None:
        return self.frames[n - 1] if 1 <= n <= len(self.frames) else None

    def filled(self, n: int) -> np.ndarray | None:
        return self.fills.get(n)


class _Stream:
    """A :class:`Clip` over an iterator of frames, holding only the frames asked for lately."""

    def __init__(self, frames: Iterable[EyeFrame], keep: int):
        self._iter = iter(frames)
        self._held: dict[int, EyeFrame] = {}
        self._read = 0
        self.keep = keep

    def eye(self, n: int) -> EyeFrame | None:
        while self._read < n:
            frame = next(self._iter, None)
            if frame is None:
                return None
            self._read += 1
            self._held[self._read] = frame
            for old in [m for m in self._held if m <= self._read - self.keep]:
                del self._held[old]
        return self._held.get(n) if n >= 1 else None

    def filled(self, n: int) -> np.ndarray | None:
        return None


def fill_clip(name: str, frames: Iterable[EyeFrame], **options) -> Iterator[np.ndarray]:
    """Fill a clip given as frames in order (a list or a stream), yielding each frame's fill (uint8 sRGB).

    Memory holds the inpainter's window, not the clip. ``options`` go to the inpainter's constructor.
    """
    clip = _Stream(frames, keep=2)
    inpainter = INPAINTERS[name](clip, **options)
    # The window: the frames either side that the inpainter looks at, and the one being filled.
    clip.keep = 2 * max(getattr(inpainter, "radius", 0), 1) + 2
    n = 1
    while clip.eye(n) is not None:
        yield inpainter.fill(n)
        n += 1


INPAINTERS: dict[str, Callable[..., Inpainter]] = {
    "background": BackgroundInpainter,
    "telea": _per_frame(fill_telea),
    "none": _per_frame(fill_none),
}
DEFAULT_INPAINTER = "background"
