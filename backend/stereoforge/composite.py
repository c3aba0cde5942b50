"""Stereo layouts: how the two eyes are packed into the frames a display or a player expects.

* ``sbs``: left | right, full width each (a 2W x H frame).
* ``sbs-half``: left | right squeezed to half width each (W x H; "half side-by-side" of 3D TVs).
* ``tb``, ``tb-half``: left over right, full or half height.
* ``anaglyph``: one W x H frame for red-cyan glasses, Dubois' least-squares matrices.
* ``separate``: the two eyes as two streams (``left`` and ``right``).
* ``vr180``: each eye as a half-sphere equirectangular picture (:mod:`.vr180`), left | right, for headsets.
* ``exr-multiview``: one EXR per frame holding both eyes as the views ``left`` and ``right`` (linear, half
  float, the dropout mask as a channel), for Nuke and Blender; frames only, no video.

Frames are (H, W, 3) float32 linear RGB in and 8-bit sRGB out (linear half float for ``exr-multiview``).
"""

from __future__ import annotations

import cv2
import numpy as np

from .camera import Intrinsics
from .io.images import srgb_integers_to_linear, to_uint8_srgb, write_multiview_exr
from .vr180 import eye_size, to_half_sphere

MULTIVIEW_EXR = "exr-multiview"
VR180 = "vr180"
LAYOUTS = ("sbs", "sbs-half", "tb", "tb-half", "anaglyph", "separate", VR180, MULTIVIEW_EXR)
#: Layouts written as frames only: they have no video.
FRAME_ONLY_LAYOUTS = (MULTIVIEW_EXR,)
#: Layouts whose frames a player can be told about in the stream's stereo metadata.
STEREO_METADATA = {"sbs": "sbs", "sbs-half": "sbs", "tb": "tb", "tb-half": "tb", VR180: "sbs"}
#: The file-name tags VR players (Skybox, DeoVR, Pigasus...) read the layout from, for ``--vr-tags``.
VR_TAGS = {"sbs": "_LR", "sbs-half": "_3dh", "tb": "_TB", "tb-half": "_3dv", VR180: "_180_LR"}

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


def compose(left: np.ndarray, right: np.ndarray, layout: str,
            eyes: dict[str, Intrinsics] | None = None) -> dict[str, np.ndarray]:
    """The frames of ``layout`` for one pair of eyes, as ``{stream name: (h, w, 3) uint8 sRGB}``.

    ``left`` and ``right``: each eye as linear float RGB, or as its uint8 sRGB codes (what the filled eyes are:
    the frames are the same, and the codes need no encoding again; 8-bit codes decode and encode back to
    themselves). Every layout gives one stream named after it, except ``separate``, which gives ``left`` and
    ``right``.
    ``vr180`` needs ``eyes``, each eye's pinhole camera (its own principal point: an off-axis eye's lens
    shift included); ``exr-multiview`` is written by :func:`write_multiview_frame` instead.
    """
    if layout == VR180:
        size = eye_size(eyes["left"])
        # Resampled as 8-bit codes, as the half layouts are: the picture is 20 times the eye's pixels, most
        # of them black, and encoding them all from float took 0.83 s a frame at 854x480 (0.18 s so).
        return {layout: np.concatenate([to_half_sphere(_codes(eye), eyes[name], size)
                                        for name, eye in (("left", left), ("right", right))], axis=1)}
    if layout == "anaglyph":
        return {layout: to_uint8_srgb(anaglyph(_linear(left), _linear(right)))}
    l8, r8 = _codes(left), _codes(right)
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


def _codes(eye: np.ndarray) -> np.ndarray:
    """An eye as uint8 sRGB codes."""
    return eye if eye.dtype == np.uint8 else to_uint8_srgb(eye)


def _linear(eye: np.ndarray) -> np.ndarray:
    """An eye as linear float RGB."""
    return srgb_integers_to_linear(eye) if eye.dtype == np.uint8 else eye


def write_multiview_frame(path: str, left: np.ndarray, right: np.ndarray, left_dropout: np.ndarray,
                          right_dropout: np.ndarray) -> None:
    """One ``exr-multiview`` frame: per view ``R``, ``G``, ``B`` (linear) and ``dropout`` (1 where the eye
    was inpainted), half float."""
    views = {}
    for name, rgb, dropout in (("left", left, left_dropout), ("right", right, right_dropout)):
        views[name] = {**{c: rgb[..., i] for i, c in enumerate("RGB")}, "dropout": dropout.astype(np.float32)}
    write_multiview_exr(path, views)


def stream_names(layout: str) -> tuple[str, ...]:
    return ("left", "right") if layout == "separate" else (layout,)


def frame_ext(stream: str) -> str:
    """The file type of a stream's composite frames."""
    return "exr" if stream in FRAME_ONLY_LAYOUTS else "png"

