"""Depth kinds to metric depth, relative depth that does not pump over time, and soft depth edges made sharp."""

import cv2
import numpy as np
import pytest
import torch

from stereoforge.camera import Intrinsics
from stereoforge.depth import DepthConverter, DepthStats, observe, sharpen_edges, smooth
from stereoforge.errors import InputError
from stereoforge.rig import StereoRig, eye_views
from stereoforge.splat import splat_eye


def relative_stats(frames, **kw):
    stats = DepthStats("relative")
    for i, f in enumerate(frames):
        observe(stats, f, label=f"frame {i + 1}", **kw)
    return stats


def test_metric_depth_passes_through_and_missing_becomes_nan():
    raw = np.array([[2.0, np.nan], [-1.0, 0.0]], np.float32)
    stats = DepthStats("metric")
    observe(stats, raw, label="f")
    conv = DepthConverter.from_stats(stats, 0.0)
    z = conv(raw, 0)
    assert z[0, 0] == 2.0 and np.isnan(z[0, 1]) and np.isnan(z[1, 0]) and np.isnan(z[1, 1])
    assert conv.metric_range(stats) == (2.0, 2.0)


def test_depth_scale_converts_millimetres():
    raw = np.array([[1500.0, 3000.0]], np.float32)
    stats = DepthStats("metric")
    observe(stats, raw, label="f", scale=0.001)
    conv = DepthConverter.from_stats(stats, 0.0, scale=0.001)
    assert np.allclose(conv(raw, 0), [[1.5, 3.0]])
    assert conv.metric_range(stats) == pytest.approx((1.5, 3.0))


def test_disparity_is_focal_times_baseline_over_disparity():
    raw = np.array([[10.0, 20.0, 0.0]], np.float32)
    conv = DepthConverter("disparity", focal_px=500.0, baseline=0.1)
    z = conv(raw, 0)
    assert z[0, 0] == pytest.approx(5.0) and z[0, 1] == pytest.approx(2.5) and np.isnan(z[0, 2])
    stats = DepthStats("disparity")
    observe(stats, raw, label="f", focal_px=500.0, baseline=0.1)
    assert conv.metric_range(stats) == pytest.approx((2.5, 5.0))


def test_relative_depth_maps_percentiles_to_near_and_far_in_inverse_depth():
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.2, 0.8, size=(64, 64)).astype(np.float32)
    stats = relative_stats([raw])
    conv = DepthConverter.from_stats(stats, 0.0, near=1.0, far=10.0)
    z = conv(raw, 0)
    assert np.nanmin(z) == pytest.approx(1.0) and np.nanmax(z) == pytest.approx(10.0)
    # Inverse depth is affine in the relative value: the value halfway between lo and hi lands halfway in 1/Z.
    lo, hi = stats.lo[0], stats.hi[0]
    mid = conv(np.array([[(lo + hi) / 2]], np.float32), 0)[0, 0]
    assert 1 / mid == pytest.approx((1 / 1.0 + 1 / 10.0) / 2, rel=1e-5)
    # Bigger relative value = nearer.
    assert conv(np.array([[hi]], np.float32), 0)[0, 0] < conv(np.array([[lo]], np.float32), 0)[0, 0]


def test_relative_normalisation_is_smooth_over_time():
    """A still scene whose model output has one frame with a stray bright spot: per-frame min/max would
    make the whole picture jump on that frame; the smoothed normalisation barely moves."""
    rng = np.random.default_rng(1)
    base = rng.uniform(0.2, 0.8, size=(64, 64)).astype(np.float32)
    frames = [base.copy() for _ in range(48)]
    frames[24][:20, :20] = 3.0  # 10 % of the pixels jump nearer
    stats = relative_stats(frames)
    per_frame = DepthConverter.from_stats(stats, 0.0)
    steady = DepthConverter.from_stats(stats, 24.0)
    probe = (slice(40, 64), slice(40, 64))  # pixels that did not change

    def jump(conv):
        return float(np.abs(conv(frames[24], 24)[probe] - conv(frames[23], 23)[probe]).mean())

    assert jump(per_frame) > 0.5  # metres: the background pumps
    assert jump(steady) < 0.2 * jump(per_frame)


def test_smooth_keeps_constant_and_ramp():
    assert np.allclose(smooth([2.0] * 10, 3.0), 2.0)
    ramp = np.arange(50, dtype=float)
    assert np.allclose(smooth(list(ramp), 2.0)[10:40], ramp[10:40])


def test_all_nan_depth_is_refused_with_the_frame_named():
    stats = DepthStats("metric")
    with pytest.raises(InputError, match="depth frame 7 of 'x.npy' has no valid depth"):
        observe(stats, np.full((4, 4), np.nan, np.float32), label="depth frame 7 of 'x.npy'")


@pytest.mark.parametrize("kw,needle", [(dict(kind="relative", near=5.0, far=2.0), "--near 5.0"),
                                       (dict(kind="disparity", baseline=0.0), "--baseline 0.0"),
                                       (dict(kind="metric", scale=-1.0), "--depth-scale -1.0"),
                                       (dict(kind="inverse"), "'inverse'")])
def test_bad_depth_settings_are_named(kw, needle):
    with pytest.raises(InputError, match=needle.replace(".", r"\.").replace("-", r"\-")):
        DepthConverter(**kw)


def test_a_soft_edge_is_made_sharp_and_a_slope_or_a_hard_edge_is_left_alone():
    """Inverse depth along one row (1/m): a foreground at 0.5 (2 m) and a background at 0.1 (10 m), joined by a
    ramp of three pixels (0.4, 0.3, 0.2), as a depth model blurs an outline. With radius 3, each ramp pixel sees
    both sides and lies between them by more than 10 % of the step: 0.4 and 0.3 are nearer the foreground and
    take 2 m, 0.2 is nearer the background and takes 10 m. With radius 2, the end pixels of the ramp see the
    ramp itself on one side, not a flat side: only the middle one is made sharp."""
    soft = 1.0 / np.array([[0.5] * 6 + [0.4, 0.3, 0.2] + [0.1] * 6], np.float32)
    np.testing.assert_allclose(sharpen_edges(soft, radius=2)[0, 6:9], [2.5, 2.0, 5.0], rtol=1e-6)
    sharp = sharpen_edges(soft, radius=3)
    np.testing.assert_allclose(sharp[0, 6:9], [2.0, 2.0, 10.0], rtol=1e-6)
    np.testing.assert_array_equal(sharp[0, :6], soft[0, :6])
    np.testing.assert_array_equal(sharp[0, 9:], soft[0, 9:])
    # A slanted surface (inverse depth changing steadily) and a hard edge have no ramp pixel.
    slope = 1.0 / np.linspace(0.5, 0.1, 15, dtype=np.float32)[None]
    np.testing.assert_array_equal(sharpen_edges(slope, radius=3), slope)
    hard = 1.0 / np.array([[0.5] * 7 + [0.1] * 8], np.float32)
    np.testing.assert_array_equal(sharpen_edges(hard, radius=3), hard)
    # Missing depth stays missing and is no side; radius 0 changes nothing.
    holed = soft.copy()
    holed[0, 7] = np.nan
    out = sharpen_edges(holed, radius=3)
    assert np.isnan(out[0, 7]) and out[0, 6] == pytest.approx(2.0) and out[0, 8] == pytest.approx(10.0)
    assert sharpen_edges(soft, radius=0) is soft


def test_sharp_edges_give_the_eye_the_holes_of_hard_depth():
    """A box at 2 m before a wall at 6 m, its outline blurred as a depth model blurs it: splatted as it is, the
    ramp's points land in the disocclusion ("flying pixels"); sharpened, the eye's dropout is that of the hard
    depth again, but for a few pixels at the box's corners."""
    h, w = 40, 120
    hard = np.full((h, w), 6.0, np.float32)
    hard[10:30, 40:80] = 2.0
    inverse = cv2.GaussianBlur(1.0 / hard, (0, 0), 1.0)
    soft = (1.0 / inverse).astype(np.float32)
    k = Intrinsics.from_focal(w, h, 100.0)
    right = eye_views(StereoRig(0.2, 6.0, "PARALLEL", "LEFT"), k.fx)["right"]
    color = torch.rand(1, 3, h, w)

    def dropout(depth):
        return splat_eye(color, torch.from_numpy(depth)[None], k, right).dropout[0].numpy()

    # Where the box's holes open (not the strip the right eye sees past the frame's right edge).
    truth, smeared, cleaned = (dropout(d)[:, :100] for d in (hard, soft, sharpen_edges(soft)))
    assert truth.sum() >= 20 * 6  # 20 rows, disparity 10 px at 2 m against 3.3 at 6 m: holes about 6 px wide
    assert smeared.sum() < 0.9 * truth.sum()  # stray points cover a sixth of the holes (118 of 140 pixels left)
    assert (cleaned != truth).sum() <= 0.1 * truth.sum()  # 8 pixels differ
