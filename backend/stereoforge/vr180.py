"""VR180: each eye as a half-sphere equirectangular picture, as headsets show it.

An eye's picture covers 180 degrees of longitude (left to right) and 180 of latitude (top to bottom), one
square image per eye: pixel (row i, column j) of an S x S eye looks along

    longitude = ((j + 0.5) / S - 0.5) * 180 degrees       (0 straight ahead, positive to the right)
    latitude  = (0.5 - (i + 0.5) / S) * 180 degrees       (positive up)

and shows what the pinhole eye saw in that direction: in Blender camera space (+X right, +Y up, looking down
-Z) the direction is (cos lat sin lon, sin lat, -cos lat cos lon), which lands on the eye's image at
u = cx + fx tan(lon), v = cy - fy tan(lat) / cos(lon) (pixel centres at +0.5). Outside the camera's field of
view the picture is black. The two eyes are packed side by side, and the video is tagged with the spherical
metadata of :mod:`.io.spherical`.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from .camera import Intrinsics

#: Largest eye size: 2880 x 2880 per eye (a 5760 x 2880 frame, the common "5.7K" VR180 size, which H.264 and
#: H.265 decoders of headsets play).
MAX_EYE_SIZE = 2880


def eye_size(k: Intrinsics) -> int:
    """The side of a half-sphere eye, in pixels: as many pixels per degree at its centre as the pinhole eye
    has (180 degrees at ``fx`` pixels per radian), made even for 4:2:0 video, and at most :data:`MAX_EYE_SIZE`."""
    size = math.ceil(math.pi * k.fx)
    return min(size + size % 2, MAX_EYE_SIZE)


@functools.lru_cache(maxsize=4)
def half_sphere_maps(k: Intrinsics, size: int) -> tuple[np.ndarray, np.ndarray]:
    """For each pixel of a ``size`` x ``size`` half-sphere eye, where it looks in the pinhole eye ``k``.

    Returns:
        ``(map_x, map_y)``, each (size, size) float32, in OpenCV's pixel coordinates (centres at integers) for
        :func:`cv2.remap`; -1 where the direction lies outside the pinhole eye's picture.
    """
    angles = ((np.arange(size, dtype=np.float64) + 0.5) / size - 0.5) * math.pi
    lon = angles[None, :]
    lat = -angles[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.broadcast_to(k.cx + k.fx * np.tan(lon), (size, size))
        v = k.cy - k.fy * np.tan(lat) / np.cos(lon)
    inside = (np.abs(lon) < math.pi / 2) & (u >= 0) & (u <= k.width) & (v >= 0) & (v <= k.height)
    map_x = np.where(inside, u - 0.5, -1.0).astype(np.float32)
    map_y = np.where(inside, v - 0.5, -1.0).astype(np.float32)
    return map_x, map_y


def to_half_sphere(eye: np.ndarray, k: Intrinsics, size: int) -> np.ndarray:
    """A pinhole eye (H, W, C) seen through ``k`` -> its half-sphere picture (size, size, C), of the same
    dtype (float32 or uint8), black outside its field of view. Bilinear."""
    map_x, map_y = half_sphere_maps(k, size)
    return cv2.remap(eye, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=0)
