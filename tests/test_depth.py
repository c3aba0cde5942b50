"""Depth kinds to metric depth, and relative depth that does not pump over time."""

import numpy as np
import pytest

from stereoforge.depth import DepthConverter, DepthStats, observe, smooth
from stereoforge.errors import InputError


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
