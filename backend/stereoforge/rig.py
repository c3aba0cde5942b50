"""The stereo rig, in the words and the maths of Blender's stereo camera (``Camera.stereo``).

* ``interocular_distance`` (metres): distance between the two eyes.
* ``convergence_distance`` (metres): distance of the zero-parallax plane (OFFAXIS) or of the point both eyes
  turn to (TOE). PARALLEL ignores it: everything is in front of the screen.
* ``convergence_mode``: ``OFFAXIS`` (parallel eyes whose image windows are shifted so the convergence plane has
  zero parallax: Blender's default and the one stereographers use), ``PARALLEL``, ``TOE`` (eyes rotated inwards).
* ``pivot``: which view stays where the source camera is. ``CENTER`` puts the eyes at -/+ interocular/2 (seed 000
  renders both eyes from a centre view); ``LEFT`` keeps the source as the left eye and puts the right eye one
  interocular to the right (seed 002); ``RIGHT`` the mirror of that.

The eye poses and lens shifts below reproduce Blender 4.5's ``camera_stereo3d_model_matrix`` and
``camera_stereo3d_shift_x`` for a source camera at the origin (``tests/test_blender_truth.py`` checks them
against Blender's own renders).

Screen parallax of a point at depth ``Z`` is ``u_right - u_left``; for OFFAXIS it is ``f B (1/C - 1/Z)`` pixels:
negative (in front of the screen) for ``Z < C``, zero at ``Z = C``, positive behind.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .errors import InputError
from .shot import EYES

CONVERGENCE_MODES = ("OFFAXIS", "PARALLEL", "TOE")
PIVOTS = ("LEFT", "CENTER", "RIGHT")
#: The interocular distance of a rig when none is asked for, in metres: a human's eyes apart, so that the
#: shot is seen at its own scale (every default of it, the command line's, the add-on's and the tools', is this).
DEFAULT_INTEROCULAR = 0.065


@dataclass(frozen=True)
class StereoRig:
    interocular_distance: float = DEFAULT_INTEROCULAR
    convergence_distance: float = 1.95
    convergence_mode: str = "OFFAXIS"
    pivot: str = "CENTER"

    def __post_init__(self):
        check_rig(self.interocular_distance, self.convergence_distance, self.convergence_mode, self.pivot)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class EyeView:
    """Where one eye sits relative to the source camera, and its lens shift.

    ``eye_to_source`` is the 4x4 pose of the eye camera in source-camera space (Blender's model matrix for a
    source camera at the origin); ``shift_px`` is the horizontal lens shift in pixels.
    """

    name: str
    eye_to_source: np.ndarray
    shift_px: float

    @property
    def is_source(self) -> bool:
        """True when this eye is the source camera itself (its pixels are the source's, no dropout)."""
        return bool(np.allclose(self.eye_to_source, np.eye(4), atol=1e-12) and self.shift_px == 0.0)

    @property
    def source_to_eye(self) -> np.ndarray:
        return np.linalg.inv(self.eye_to_source)


def check_rig(interocular: float, convergence: float, mode: str, pivot: str) -> None:
    if not math.isfinite(interocular) or interocular <= 0:
        raise InputError(f"interocular distance {interocular} m is not valid; give a positive --interocular "
                         f"in metres ({DEFAULT_INTEROCULAR} is a human's)")
    if not math.isfinite(convergence) or convergence <= 0:
        raise InputError(f"convergence distance {convergence} m is not valid; give a positive "
                         "--convergence-distance in metres")
    if mode not in CONVERGENCE_MODES:
        raise InputError(f"convergence mode {mode!r} is not one of {', '.join(CONVERGENCE_MODES)}")
    if pivot not in PIVOTS:
        raise InputError(f"pivot {pivot!r} is not one of {', '.join(PIVOTS)}")


def _side(rig: StereoRig, eye: str) -> tuple[bool, float, float]:
    """Blender's ``is_left``, ``fac`` and ``fac_signed``."""
    is_left = eye == "left"
    fac = 0.5 if rig.pivot == "CENTER" else 1.0
    return is_left, fac, (fac if is_left else -fac)


def _at_pivot(rig: StereoRig, eye: str) -> bool:
    return (rig.pivot == "LEFT" and eye == "left") or (rig.pivot == "RIGHT" and eye == "right")


def _rot_y(angle: float) -> np.ndarray:
    """Blender's toe-in ``rotmat``: rotation by ``-angle`` about +Y (a positive angle turns -Z towards +X)."""
    c, s = math.cos(angle), math.sin(angle)
    m = np.eye(4)
    m[0, 0], m[0, 2], m[2, 0], m[2, 2] = c, -s, s, c
    return m


def _translate_x(x: float) -> np.ndarray:
    m = np.eye(4)
    m[0, 3] = x
    return m


def eye_view(rig: StereoRig, eye: str) -> EyeView:
    """The pose and lens shift of ``eye`` ("left" or "right") relative to the source camera."""
    if eye not in EYES:
        raise ValueError(f"eye must be 'left' or 'right', not {eye!r}")
    if _at_pivot(rig, eye):
        return EyeView(eye, np.eye(4), 0.0)
    is_left, fac, fac_signed = _side(rig, eye)
    b = rig.interocular_distance
    if rig.convergence_mode == "TOE":
        if rig.pivot == "CENTER":
            fac, fac_signed = -fac, -fac_signed
        angle = math.atan(b * 0.5 / rig.convergence_distance) / fac
        rot = _rot_y(angle * fac_signed)
        if rig.pivot == "CENTER":
            pose = rot.copy()
            pose[0, 3] = b * fac_signed
        else:
            pose = rot @ _translate_x(-b * fac_signed) @ rot
        return EyeView(eye, pose, 0.0)
    pose = _translate_x(-b * fac_signed)
    return EyeView(eye, pose, 0.0 if rig.convergence_mode == "PARALLEL" else float("nan"))


def eye_views(rig: StereoRig, focal_px: float) -> dict[str, EyeView]:
    """Both eyes, with the OFFAXIS lens shift worked out in pixels for a focal length of ``focal_px``.

    Blender's shift is ``(interocular / sensor_width) * (lens / convergence) * fac_signed`` in units of the
    image width, which is ``focal_px * interocular * fac_signed / convergence`` pixels.
    """
    views = {}
    for eye in EYES:
        view = eye_view(rig, eye)
        if math.isnan(view.shift_px):
            _, _, fac_signed = _side(rig, eye)
            shift = focal_px * rig.interocular_distance * fac_signed / rig.convergence_distance
            view = EyeView(eye, view.eye_to_source, shift)
        views[eye] = view
    return views


def parallax_px(rig: StereoRig, focal_px: float, depth):
    """Screen parallax ``u_right - u_left`` in pixels of a point on the axis at ``depth`` metres.

    Exact for PARALLEL and OFFAXIS (any point, not only on the axis); TOE is given by its OFFAXIS equivalent.
    """
    inv_c = 0.0 if rig.convergence_mode == "PARALLEL" else 1.0 / rig.convergence_distance
    return focal_px * rig.interocular_distance * (inv_c - 1.0 / np.asarray(depth, dtype=np.float64))


def harmonic_middle(near: float, far: float) -> float:
    """The depth halfway between ``near`` and ``far`` in parallax: ``1/C = (1/near + 1/far) / 2``.

    Converging there gives the nearest and the farthest point the same parallax, one in front of the screen
    and one behind.
    """
    return 2.0 / (1.0 / near + 1.0 / far)


def interocular_for_budget(max_parallax_pct: float, width: int, focal_px: float, near: float,
                           convergence: float | None) -> float:
    """The interocular that puts the nearest point (``near`` metres) at ``max_parallax_pct`` % of the width.

    ``convergence`` is None for PARALLEL (zero parallax at infinity).
    """
    if not math.isfinite(max_parallax_pct) or max_parallax_pct <= 0:
        raise InputError(f"--max-parallax {max_parallax_pct} % is not valid; give a positive percentage of "
                         "the image width (1 to 3 is comfortable on a TV)")
    inv_c = 0.0 if convergence is None else 1.0 / convergence
    per_metre = focal_px * abs(1.0 / near - inv_c)
    if per_metre < 1e-9:
        raise InputError(f"the nearest point ({near:.3f} m) lies on the convergence plane ({convergence:.3f} m), "
                         "so no interocular gives it parallax; give a larger --convergence-distance or "
                         "set --interocular yourself")
    return max_parallax_pct / 100.0 * width / per_metre
