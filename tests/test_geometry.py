"""Camera, rig and splatter conventions, against numbers worked out by hand.

Hand rules used below (Blender camera: +X right, +Y up, looking down -Z; pixel centres at +0.5):
* a point at pixel centre u and depth Z, seen from an eye moved by e along +X, lands at u - f e / Z;
* PARALLEL, pivot CENTER: the left eye sits at -B/2, so the picture moves right by f B / (2 Z) in it;
* OFFAXIS adds a lens shift that moves every point back by f e / C, so the plane at C does not move.
"""

import math

import numpy as np
import pytest
import torch

from stereoforge.camera import Intrinsics, pixel_grid, project, unproject
from stereoforge.errors import InputError
from stereoforge.rig import StereoRig, eye_views, harmonic_middle, interocular_for_budget, parallax_px
from stereoforge.splat import splat_eye

H, W, F = 32, 64, 50.0
K = Intrinsics.from_focal(W, H, F)


def column_centroid(rgba: torch.Tensor, row: int) -> float:
    """Intensity-weighted centre (in pixel coordinates, centres at +0.5) of channel 0 along one row."""
    line = rgba[0, 0, row].double()
    centres = torch.arange(line.numel(), dtype=torch.float64) + 0.5
    return float((line * centres).sum() / line.sum())


def line_image(col: int, depth: float) -> tuple[torch.Tensor, torch.Tensor]:
    color = torch.zeros(1, 3, H, W)
    color[:, :, :, col] = 1.0
    return color, torch.full((1, H, W), depth)


def test_unproject_project_round_trip_and_axes():
    depth = torch.rand(2, H, W) * 9 + 1
    points = unproject(depth, K)
    u, v, z = project(points, K)
    gu, gv = pixel_grid(H, W)
    assert torch.allclose(u, gu.expand_as(u), atol=1e-4)
    assert torch.allclose(v, gv.expand_as(v), atol=1e-4)
    assert torch.allclose(z, depth, atol=1e-5)
    # Top-left pixel: left of and above the axis, in front of the camera (Blender: -Z forward, +Y up).
    x, y, zc = points[0, 0, 0].tolist()
    assert x < 0 and y > 0 and zc < 0
    assert x == pytest.approx((0.5 - W / 2) / F * float(depth[0, 0, 0]), rel=1e-5)


def test_intrinsics_from_lens_and_fov():
    k = Intrinsics.from_lens(480, 270, 35.0)
    assert k.fx == pytest.approx(480 * 35 / 36)
    assert k.hfov_deg == pytest.approx(math.degrees(2 * math.atan(18 / 35)))
    assert Intrinsics.from_hfov(480, 270, k.hfov_deg).fx == pytest.approx(k.fx)
    with pytest.raises(InputError, match="focal length 0"):
        Intrinsics.from_focal(10, 10, 0.0)
    with pytest.raises(InputError, match="-1"):
        Intrinsics.from_focal(10, 10, -1.0)


@pytest.mark.parametrize("mode,convergence,expected_disparity", [
    ("PARALLEL", 4.0, F * 0.1 / 2.0),                 # f B / Z = 2.5 px
    ("OFFAXIS", 4.0, F * 0.1 * (1 / 2.0 - 1 / 4.0)),  # f B (1/Z - 1/C) = 1.25 px
    ("OFFAXIS", 2.0, 0.0),                            # the convergence plane does not move
])
def test_plane_shift_between_eyes(mode, convergence, expected_disparity):
    rig = StereoRig(0.1, convergence, mode, "CENTER")
    views = eye_views(rig, F)
    color, depth = line_image(30, 2.0)
    left = column_centroid(splat_eye(color, depth, K, views["left"]).rgba, 10)
    right = column_centroid(splat_eye(color, depth, K, views["right"]).rgba, 10)
    assert left - right == pytest.approx(expected_disparity, abs=1e-4)
    # Pivot CENTER splits it evenly, and a near object moves right in the left eye.
    assert left - 30.5 == pytest.approx(expected_disparity / 2, abs=1e-4)
    assert 30.5 - right == pytest.approx(expected_disparity / 2, abs=1e-4)
    assert float(parallax_px(rig, F, 2.0)) == pytest.approx(right - left, abs=1e-4)


def test_pivot_left_keeps_the_source_as_left_eye():
    rig = StereoRig(0.1, 4.0, "PARALLEL", "LEFT")
    views = eye_views(rig, F)
    assert views["left"].is_source
    assert views["right"].eye_to_source[0, 3] == pytest.approx(0.1)
    color, depth = line_image(30, 2.0)
    left = splat_eye(color, depth, K, views["left"])
    assert torch.equal(left.rgba[:, :3], color) and not left.dropout.any()
    right = column_centroid(splat_eye(color, depth, K, views["right"]).rgba, 10)
    assert right == pytest.approx(30.5 - F * 0.1 / 2.0, abs=1e-4)


def test_pivot_right_mirrors_pivot_left():
    views = eye_views(StereoRig(0.1, 4.0, "OFFAXIS", "RIGHT"), F)
    assert views["right"].is_source
    assert views["left"].eye_to_source[0, 3] == pytest.approx(-0.1)
    # Blender: shift_x += (B / sensor) (lens / C) fac_signed, fac_signed = +1 for the left eye.
    assert views["left"].shift_px == pytest.approx(F * 0.1 / 4.0)


def test_toe_in_eyes_look_at_the_convergence_point():
    rig = StereoRig(0.2, 3.0, "TOE", "CENTER")
    views = eye_views(rig, F)
    target = torch.tensor([[0.0, 0.0, -3.0]])
    for eye, sign in (("left", -1), ("right", 1)):
        view = views[eye]
        assert view.eye_to_source[0, 3] == pytest.approx(sign * 0.1)
        m = torch.as_tensor(view.source_to_eye, dtype=torch.float32)
        p = target @ m[:3, :3].T + m[:3, 3]
        u, v, _ = project(p, K)
        assert float(u) == pytest.approx(K.cx, abs=1e-4) and float(v) == pytest.approx(K.cy, abs=1e-4)
    # The left eye turns towards +X (its forward axis gains a positive x component).
    forward = views["left"].eye_to_source[:3, :3] @ np.array([0.0, 0.0, -1.0])
    assert forward[0] > 0


def near_square_scene():
    """A square at 1 m over columns 20..29, rows 8..23, in front of a plane at 5 m."""
    color = torch.zeros(1, 3, H, W)
    color[:, 1] = 0.5  # background: green
    depth = torch.full((1, H, W), 5.0)
    color[:, :, 8:24, 20:30] = torch.tensor([1.0, 0.0, 0.0])[:, None, None]  # square: red
    depth[:, 8:24, 20:30] = 1.0
    return color, depth


def test_near_square_occludes_and_dropout_is_the_disoccluded_strip():
    # f B / 2 = 50 * 0.08 / 2 = 2 px per unit inverse depth: the square (1 m) moves 2 px, the plane (5 m) 0.4 px.
    views = eye_views(StereoRig(0.08, 4.0, "PARALLEL", "CENTER"), F)
    color, depth = near_square_scene()
    left = splat_eye(color, depth, K, views["left"])
    right = splat_eye(color, depth, K, views["right"])
    rows = slice(8, 24)
    # The square wins over the plane where both land, in both eyes.
    assert torch.all(left.rgba[0, 0, rows, 22:32] > 0.99) and torch.all(left.rgba[0, 1, rows, 22:32] < 0.01)
    assert torch.all(right.rgba[0, 0, rows, 18:28] > 0.99)
    # Left eye: the square moved right by 2, the plane by 0.4: columns 20 and 21 were hidden behind it.
    expected = torch.zeros(H, W, dtype=torch.bool)
    expected[rows, 20:22] = True
    assert torch.equal(left.dropout[0], expected)
    # Right eye: the mirror, on the square's right side: columns 28 and 29.
    expected = torch.zeros(H, W, dtype=torch.bool)
    expected[rows, 28:30] = True
    assert torch.equal(right.dropout[0], expected)
    # The eye's depth says which side is background.
    assert float(left.depth[0, 12, 25]) == pytest.approx(1.0, abs=1e-4)
    assert float(left.depth[0, 12, 10]) == pytest.approx(5.0, abs=1e-4)
    assert math.isinf(float(left.depth[0, 12, 21]))


def test_missing_depth_makes_no_point():
    color = torch.ones(1, 3, H, W)
    depth = torch.full((1, H, W), 3.0)
    depth[0, :, 10] = float("nan")
    depth[0, :, 40] = -1.0
    depth[0, :, 50] = float("inf")
    view = eye_views(StereoRig(0.065, 3.0, "OFFAXIS", "CENTER"), F)["left"]  # zero parallax at 3 m
    out = splat_eye(color, depth, K, view)
    assert torch.equal(out.dropout[0].any(dim=0).nonzero().flatten(), torch.tensor([10, 40, 50]))


def test_batch_frames_are_independent():
    color, depth = near_square_scene()
    view = eye_views(StereoRig(0.08, 4.0, "OFFAXIS", "CENTER"), F)["right"]
    single = splat_eye(color, depth, K, view)
    other_color, other_depth = line_image(12, 3.0)
    both = splat_eye(torch.cat((other_color, color)), torch.cat((other_depth, depth)), K, view)
    assert torch.allclose(both.rgba[1], single.rgba[0]) and torch.equal(both.dropout[1], single.dropout[0])


def test_depth_budget_sets_the_interocular():
    # 2 % of 100 px = 2 px at the nearest point (1 m), f = 50, no convergence: B = 2 / (50 * 1) = 0.04 m.
    assert interocular_for_budget(2.0, 100, 50.0, 1.0, None) == pytest.approx(0.04)
    # With convergence at the harmonic middle of 1..3 m (1.5 m): B = 2 / (50 * (1 - 1/1.5)) = 0.12 m.
    c = harmonic_middle(1.0, 3.0)
    assert c == pytest.approx(1.5)
    b = interocular_for_budget(2.0, 100, 50.0, 1.0, c)
    assert b == pytest.approx(0.12)
    rig = StereoRig(b, c, "OFFAXIS", "CENTER")
    assert float(parallax_px(rig, 50.0, 1.0)) == pytest.approx(-2.0)
    assert float(parallax_px(rig, 50.0, 3.0)) == pytest.approx(2.0)
    with pytest.raises(InputError, match="convergence plane"):
        interocular_for_budget(2.0, 100, 50.0, 1.5, 1.5)


@pytest.mark.parametrize("bad", [dict(interocular_distance=0.0), dict(interocular_distance=-0.1),
                                 dict(convergence_distance=0.0), dict(convergence_mode="SIDEWAYS"),
                                 dict(pivot="MIDDLE")])
def test_bad_rig_values_are_refused_by_name(bad):
    with pytest.raises(InputError) as err:
        StereoRig(**bad)
    assert str(next(iter(bad.values()))) in str(err.value)
