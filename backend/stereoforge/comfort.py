"""Viewing comfort: how far behind the screen a shot may reach, and the floating window.

Parallax is ``u_right - u_left`` in pixels (``rig.parallax_px``): negative in front of the screen, positive
behind. Behind the screen, the eyes look apart by the parallax measured on the screen; once that is wider than
the viewer's own eye separation the eyes would have to turn outwards (diverge), which no one can do in comfort.
So the far side has two limits: a share of the image width (a stereographer's budget), and the width that
diverges on a given screen.

A *window violation* is something in front of the screen (negative parallax) cut by the left or right frame
edge: the edge says "behind", the depth says "in front". A floating window blacks out the strip that only one
eye sees there (the left edge of the left eye, the right edge of the right eye), which moves the frame edge
forward to the nearest thing it cuts.
"""

from __future__ import annotations

import math

import numpy as np

from .rig import StereoRig, parallax_px

#: The separation of an adult viewer's eyes, in metres: far parallax on the screen must stay under it. A fact of
#: the audience, kept apart from the rig's default interocular (rig.DEFAULT_INTEROCULAR, a choice of the shot's)
#: though both are 65 mm today: a narrower default rig must not loosen the divergence limit.
VIEWER_EYE_SEPARATION = 0.065
#: The columns at each frame side where the floating window looks for things in front of the screen.
EDGE_BAND = 0.03


def far_limit_px(width: int, max_far_pct: float | None, screen_width_m: float | None) -> float | None:
    """The largest far parallax allowed, in pixels of an image ``width`` wide (None: no limit given).

    Args:
        max_far_pct: the budget's far side, % of the width.
        screen_width_m: the screen the shot is made for; parallax wider than VIEWER_EYE_SEPARATION on it
            diverges.
    """
    limits = []
    if max_far_pct is not None:
        limits.append(max_far_pct / 100.0 * width)
    if screen_width_m is not None:
        limits.append(VIEWER_EYE_SEPARATION / screen_width_m * width)
    return min(limits) if limits else None


def window_edges(depth: np.ndarray, rig: StereoRig, focal_px: float) -> tuple[int, int]:
    """Widths in pixels of the floating window's black strips: ``(left edge of the left eye, right edge of
    the right eye)``, for a frame of planar ``depth`` (H, W) in metres (NaN or inf where missing).

    Each is the parallax of the nearest point in front of the screen within a band at that frame side (0 when
    nothing there is in front of the screen).
    """
    band = max(1, math.ceil(EDGE_BAND * depth.shape[1]))
    widths = []
    for strip in (depth[:, :band], depth[:, -band:]):
        finite = strip[np.isfinite(strip) & (strip > 0)]
        nearest = float(parallax_px(rig, focal_px, finite.min())) if finite.size else 0.0
        widths.append(max(0, math.ceil(-nearest)))
    return widths[0], widths[1]
