"""Forward splatting of RGB-D frames into a stereo eye, in torch (CPU or CUDA).

Each source pixel is unprojected with its depth (seed 000, eq. 1-3), moved into the eye's camera
(:mod:`stereoforge.rig`), projected, and splatted bilinearly onto the four nearest target pixels (seed 002's
forward splatting). Where several points land on one pixel, the nearest surface wins: contributions within
``depth_tolerance`` of the nearest depth at that pixel form the front layer; everything farther forms a back
layer that only shows through where the front layer covers less than the whole pixel (front-to-back "over"
compositing of two layers). This keeps depth edges antialiased like a real render, instead of either
hard-overwriting (aliasing) or blending foreground into background (seed 002's sqrt(2)^disparity weights).

Pixels whose total coverage stays under ``coverage_threshold`` are dropout: no point reached them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .camera import Intrinsics, project, unproject
from .rig import EyeView


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
              depth_tolerance: float = 0.05, coverage_threshold: float = 0.5) -> EyeImage:
    """Render one eye of a batch of RGB-D frames.

    Args:
        color: (B, 3, H, W) linear RGB of the source view.
        depth: (B, H, W) planar depth of the source view in metres; non-finite or non-positive = no point.
        k: intrinsics of the source view; the eye uses the same intrinsics (plus its lens shift).
        view: the eye's pose and lens shift relative to the source camera.
        depth_tolerance: relative depth band, around the nearest point at a pixel, that counts as one surface.
        coverage_threshold: a pixel covered less than this is dropout.

    Returns:
        The eye as an :class:`EyeImage` of the same height and width.
    """
    b, _, h, w = color.shape
    valid = valid_depth(depth)
    if view.is_source:
        alpha = torch.ones_like(depth)
        rgba = torch.cat((color, alpha[:, None]), dim=1)
        return EyeImage(rgba, depth.clone(), torch.zeros_like(valid))

    dtype, device = color.dtype, color.device
    n = b * h * w
    x, y, z, valid = _target_positions(depth, valid, k, view)

    # Bilinear taps: the four neighbours of each landing point, or two when the eye only moved sideways
    # (PARALLEL and OFFAXIS keep rows: y is the source row, exactly).
    x0 = torch.floor(x)
    ax = x - x0
    if y is None:
        rows = torch.arange(h, device=device).view(1, h, 1)
        taps = [(x0, rows, 1 - ax), (x0 + 1, rows, ax)]
    else:
        y0 = torch.floor(y)
        ay = y - y0
        taps = [(x0, y0, (1 - ax) * (1 - ay)), (x0 + 1, y0, ax * (1 - ay)),
                (x0, y0 + 1, (1 - ax) * ay), (x0 + 1, y0 + 1, ax * ay)]
    frame = torch.arange(b, device=device).view(b, 1, 1) * (h * w)
    index, weight = [], []
    for tx, ty, tw in taps:
        inside = valid & (tx >= 0) & (tx < w) & (ty >= 0) & (ty < h) & (tw > 1e-6)
        target = frame + ty.long().clamp(0, h - 1) * w + tx.long().clamp(0, w - 1)
        # Contributions that land nowhere go to one spare slot, n, with no weight.
        index.append(torch.where(inside, target, n).reshape(-1))
        weight.append(torch.where(inside, tw, 0.0).reshape(-1))
    index, weight = torch.cat(index), torch.cat(weight)
    t = len(taps)
    zc = torch.where(weight > 0, z.reshape(1, n).expand(t, n).reshape(-1), torch.inf)

    nearest = torch.full((n + 1,), torch.inf, dtype=dtype, device=device)
    nearest.scatter_reduce_(0, index, zc, reduce="amin")
    back = zc > nearest[index] * (1.0 + depth_tolerance)
    # Front and back layer in one pass: back-layer contributions go to slots n+1 .. 2n+1.
    layered = index + back * (n + 1)

    def accumulate(values: torch.Tensor | None) -> torch.Tensor:
        w_values = weight if values is None else (weight.view(t, n) * values.reshape(1, n)).reshape(-1)
        return torch.bincount(layered, weights=w_values, minlength=2 * (n + 1)).to(dtype).view(2, n + 1)[:, :n]

    total = accumulate(None)
    norm = total.clamp_min(1e-12)
    means = [accumulate(color[:, c]) / norm for c in range(3)]
    z_mean = accumulate(torch.where(valid, z, 0.0)) / norm

    a_front = total[0].clamp(max=1.0)
    a_back = total[1].clamp(max=1.0) * (1.0 - a_front)
    alpha = a_front + a_back
    rgb = torch.stack([m[0] * a_front + m[1] * a_back for m in means])
    eye_depth = torch.where(total[0] > 0, z_mean[0], torch.where(total[1] > 0, z_mean[1], torch.inf))

    rgba = torch.cat((rgb, alpha[None])).view(4, b, h, w).permute(1, 0, 2, 3).contiguous()
    return EyeImage(rgba, eye_depth.view(b, h, w), (alpha < coverage_threshold).view(b, h, w))


def _target_positions(depth: torch.Tensor, valid: torch.Tensor, k: Intrinsics, view: EyeView):
    """Where each source pixel lands in the eye: continuous pixel-index coordinates (centres at integers).

    Returns ``(x, y, z, valid)``, each (B, H, W); ``y`` is None when the eye only moved along its x axis (no
    rotation): then rows are kept and ``x = j - f e / Z - shift`` for an eye at ``e`` along +X, the familiar
    disparity.
    """
    m = view.source_to_eye
    d = torch.where(valid, depth, torch.ones_like(depth))
    if np.allclose(m[:3, :3], np.eye(3)) and m[1, 3] == 0 and m[2, 3] == 0:
        cols = torch.arange(depth.shape[-1], device=depth.device, dtype=depth.dtype)
        x = cols + (k.fx * float(m[0, 3])) / d - view.shift_px
        return x, None, d, valid
    mt = torch.as_tensor(m, dtype=depth.dtype, device=depth.device)
    points = unproject(d, k) @ mt[:3, :3].T + mt[:3, 3]
    u, v, z = project(points, k, view.shift_px)
    return u - 0.5, v - 0.5, z, valid & (z > 1e-6)
