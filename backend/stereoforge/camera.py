"""Pinhole camera in Blender's conventions.

Camera space is Blender's: +X right, +Y up, the camera looks down -Z. Depth ``D`` is planar: the distance along
-Z (so ``Z = -D``), which is what Cycles' Z pass holds. Image pixels: ``u`` to the right, ``v`` down, pixel
``(row i, column j)`` has its centre at ``(u, v) = (j + 0.5, i + 0.5)``.

Seed 000, eq. 1-3 (written there with Y down and +Z forward) becomes, in these conventions::

    X =  D (u - cx) / fx
    Y = -D (v - cy) / fy
    Z = -D

Intrinsics follow Blender's camera with ``sensor_fit = 'HORIZONTAL'``: ``fx = lens / sensor_width * width`` and
square pixels. A horizontal lens shift (Blender's ``shift_x``, used by the off-axis stereo camera) moves the image
window to the right, so a point lands ``shift_px`` pixels further left: ``u = cx + fx X / D - shift_px``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .errors import InputError

#: Blender's default sensor width (mm); a "35 mm-equivalent" lens is given on this full-frame width.
FULL_FRAME_SENSOR_MM = 36.0
#: The default lens: 35 mm on a full-frame sensor, a horizontal field of view of about 54.4 degrees.
DEFAULT_LENS_MM = 35.0


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels for an image of ``width`` x ``height``."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_focal(cls, width: int, height: int, focal_px: float) -> Intrinsics:
        """Square pixels, principal point at the image centre."""
        if not (isinstance(width, int) and isinstance(height, int)) or width <= 0 or height <= 0:
            raise InputError(f"image size {width}x{height} is not valid; width and height must be positive")
        if not math.isfinite(focal_px) or focal_px <= 0:
            raise InputError(f"focal length {focal_px} px is not valid; give a positive --focal-px")
        return cls(width, height, float(focal_px), float(focal_px), width / 2.0, height / 2.0)

    @classmethod
    def from_hfov(cls, width: int, height: int, hfov_deg: float) -> Intrinsics:
        """Square pixels from a horizontal field of view in degrees (0 < hfov < 180)."""
        if not math.isfinite(hfov_deg) or not 0.0 < hfov_deg < 180.0:
            raise InputError(f"horizontal field of view {hfov_deg} degrees is not valid; give --hfov in (0, 180)")
        return cls.from_focal(width, height, width / 2.0 / math.tan(math.radians(hfov_deg) / 2.0))

    @classmethod
    def from_lens(cls, width: int, height: int, lens_mm: float = DEFAULT_LENS_MM,
                  sensor_width_mm: float = FULL_FRAME_SENSOR_MM) -> Intrinsics:
        """Blender's camera: focal length in mm on a sensor of the given width (sensor fit horizontal)."""
        return cls.from_focal(width, height, lens_mm / sensor_width_mm * width)

    @property
    def hfov_deg(self) -> float:
        return math.degrees(2.0 * math.atan(self.width / 2.0 / self.fx))

    @property
    def lens_mm(self) -> float:
        """The focal length in mm that gives this field of view on a 36 mm sensor (Blender's default)."""
        return self.fx / self.width * FULL_FRAME_SENSOR_MM


def pixel_grid(height: int, width: int, device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates ``(u, v)``, each of shape (H, W): ``u = j + 0.5``, ``v = i + 0.5``."""
    v = torch.arange(height, device=device, dtype=dtype).add_(0.5)
    u = torch.arange(width, device=device, dtype=dtype).add_(0.5)
    return u.expand(height, width), v[:, None].expand(height, width)


def unproject(depth: torch.Tensor, k: Intrinsics) -> torch.Tensor:
    """Points in camera space from planar depth.

    Args:
        depth: (..., H, W) depth in metres along -Z.
        k: intrinsics of the image.

    Returns:
        (..., H, W, 3) points ``(X, Y, Z)`` in Blender camera space; ``Z = -depth``.
    """
    u, v = pixel_grid(depth.shape[-2], depth.shape[-1], depth.device, depth.dtype)
    x = (u - k.cx) / k.fx * depth
    y = -(v - k.cy) / k.fy * depth
    return torch.stack((x, y, -depth), dim=-1)


def project(points: torch.Tensor, k: Intrinsics, shift_px: float = 0.0) -> tuple[torch.Tensor, torch.Tensor,
                                                                                  torch.Tensor]:
    """Image position and depth of camera-space points.

    Args:
        points: (..., 3) points in Blender camera space.
        k: intrinsics of the target image.
        shift_px: horizontal lens shift in pixels (positive moves the image window right).

    Returns:
        ``(u, v, depth)``, each (...): pixel coordinates (pixel centres at +0.5) and planar depth ``-Z``.
        Points behind the camera get a non-positive depth; callers drop them.
    """
    depth = -points[..., 2]
    u = k.cx + k.fx * points[..., 0] / depth - shift_px
    v = k.cy - k.fy * points[..., 1] / depth
    return u, v, depth
