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
    points = unproject(torch.where(valid, depth, torch.ones_like(depth)), k)
    m = torch.as_tensor(view.source_to_eye, dtype=dtype, device=device)
    points = points @ m[:3, :3].T + m[:3, 3]
    u, v, z = project(points, k, view.shift_px)
    valid &= z > 1e-6

    # Continuous pixel-index coordinates (pixel centres at integers), their four neighbours and weights.
    x, y = u - 0.5, v - 0.5
    x0, y0 = torch.floor(x), torch.floor(y)
    ax, ay = x - x0, y - y0
    xs = torch.stack((x0, x0 + 1, x0, x0 + 1))
    ys = torch.stack((y0, y0, y0 + 1, y0 + 1))
    ws = torch.stack(((1 - ax) * (1 - ay), ax * (1 - ay), (1 - ax) * ay, ax * ay))
    inside = valid & (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h) & (ws > 1e-6)

    # Flat target index per contribution; everything that lands nowhere goes to one spare slot at the end.
    n = b * h * w
    frame = torch.arange(b, device=device).view(1, b, 1, 1) * (h * w)
    index = torch.where(inside, frame + ys.long().clamp(0, h - 1) * w + xs.long().clamp(0, w - 1),
                        torch.full_like(frame, n)).reshape(-1)
    zc = torch.where(inside, z.expand_as(ws), torch.full_like(ws, torch.inf)).reshape(-1)
    wc = torch.where(inside, ws, torch.zeros_like(ws)).reshape(-1)

    nearest = torch.full((n + 1,), torch.inf, dtype=dtype, device=device)
    nearest.scatter_reduce_(0, index, zc, reduce="amin")
    front = zc <= nearest[index] * (1.0 + depth_tolerance)

    # Per contribution: weight * (r, g, b, 1, depth), summed per target pixel, front and back layer apart.
    values = torch.cat((color.permute(1, 0, 2, 3).reshape(3, 1, n).expand(3, 4, n).reshape(3, -1),
                        torch.ones_like(zc)[None], torch.where(inside.reshape(-1), zc, 0.0)[None])).T
    values = values * wc[:, None]
    layers = torch.zeros((2, n + 1, 5), dtype=dtype, device=device)
    layers[0].index_add_(0, index, values * front[:, None])
    layers[1].index_add_(0, index, values * (~front)[:, None])
    layers = layers[:, :n]

    weight = layers[..., 3]
    mean = layers / weight.clamp_min(1e-12)[..., None]
    a_front = weight[0].clamp(max=1.0)
    a_back = weight[1].clamp(max=1.0) * (1.0 - a_front)
    alpha = a_front + a_back
    rgb = mean[0, :, :3] * a_front[:, None] + mean[1, :, :3] * a_back[:, None]
    eye_depth = torch.where(weight[0] > 0, mean[0, :, 4], torch.where(weight[1] > 0, mean[1, :, 4], torch.inf))

    rgba = torch.cat((rgb, alpha[:, None]), dim=1).view(b, h, w, 4).permute(0, 3, 1, 2).contiguous()
    return EyeImage(rgba, eye_depth.view(b, h, w), (alpha < coverage_threshold).view(b, h, w))
