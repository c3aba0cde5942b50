"""Stereo layouts: how the two eyes are packed into the frames a display or a player expects.

* ``sbs``: left | right, full width each (a 2W x H frame).
* ``sbs-half``: left | right squeezed to half width each (W x H; "half side-by-side" of 3D TVs).
* ``tb``, ``tb-half``: left over right, full or half height.
* ``anaglyph``: one W x H frame for red-cyan glasses, Dubois' least-squares matrices.
* ``separate``: the two eyes as two streams (``left`` and ``right``).

Frames are (H, W, 3) float32 linear RGB in and 8-bit sRGB out.
"""

from __future__ import annotations

import cv2
import numpy as np

from .io.images import to_uint8_srgb

LAYOUTS = ("sbs", "sbs-half", "tb", "tb-half", "anaglyph", "separate")
#: Layouts whose frames a player can be told about in the stream's stereo metadata.
STEREO_METADATA = {"sbs": "sbs", "sbs-half": "sbs", "tb": "tb", "tb-half": "tb"}

# Dubois' red-cyan matrices (Eric Dubois, "A projection method to generate anaglyph stereo images", 2001),
# applied to linear RGB: output = L @ left + R @ right.
DUBOIS_RED_CYAN_LEFT = np.array([[0.437, 0.449, 0.164],
                                 [-0.062, -0.062, -0.024],
                                 [-0.048, -0.050, -0.017]], dtype=np.float32)
DUBOIS_RED_CYAN_RIGHT = np.array([[-0.011, -0.032, -0.007],
                                  [0.377, 0.761, 0.009],
                                  [-0.026, -0.093, 1.234]], dtype=np.float32)


def anaglyph(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Dubois red-cyan anaglyph of two (H, W, 3) linear RGB eyes -> (H, W, 3) linear RGB in [0, 1]."""
    out = left @ DUBOIS_RED_CYAN_LEFT.T + right @ DUBOIS_RED_CYAN_RIGHT.T
    return np.clip(out, 0.0, 1.0)


def _squeeze(srgb8: np.ndarray, axis: int) -> np.ndarray:
    h, w = srgb8.shape[:2]
    size = (w // 2, h) if axis == 1 else (w, h // 2)
    return cv2.resize(srgb8, size, interpolation=cv2.INTER_AREA)


def compose(left: np.ndarray, right: np.ndarray, layout: str) -> dict[str, np.ndarray]:
    """The frames of ``layout`` for one pair of eyes, as ``{stream name: (h, w, 3) uint8 sRGB}``.

    Every layout gives one stream named after it, except ``separate``, which gives ``left`` and ``right``.
    """
    if layout == "anaglyph":
        return {layout: to_uint8_srgb(anaglyph(left, right))}
    l8, r8 = to_uint8_srgb(left), to_uint8_srgb(right)
    if layout == "separate":
        return {"left": l8, "right": r8}
    if layout == "sbs":
        return {layout: np.concatenate((l8, r8), axis=1)}
    if layout == "tb":
        return {layout: np.concatenate((l8, r8), axis=0)}
    if layout == "sbs-half":
        return {layout: np.concatenate((_squeeze(l8, 1), _squeeze(r8, 1)), axis=1)}
    if layout == "tb-half":
        return {layout: np.concatenate((_squeeze(l8, 0), _squeeze(r8, 0)), axis=0)}
    raise ValueError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")


def stream_names(layout: str) -> tuple[str, ...]:
    return ("left", "right") if layout == "separate" else (layout,)

