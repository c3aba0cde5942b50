"""The fast splatter against its references, and the seams a farm cuts a clip at.

* The compiled CPU kernels (two taps for eyes that keep rows, four for eyes that turn) give what the torch ops
  give, on any number of threads.
* The two-tap path (eyes that keep rows: PARALLEL, OFFAXIS) gives what the general four-tap path gives.
* The result of a frame does not depend on the batch it came in, nor on cutting the clip in two.
* Where every disparity is a whole number of pixels, bilinear splatting is nearest-pixel splatting: there the
  plain numpy z-buffer of ``stereoforge bench`` (argsort by disparity, last write wins) gives the same eye.
* Worked by hand on one row: the eye's depth is the nearest surface at a pixel (as Blender's Z pass), not a mean
  of the front layer; and a tap that weighs nothing sets no depth.
* ``convert`` over frames 1-5 and 6-10 into two shot folders writes the same eyes as one run over 1-10.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stereoforge import splat_cpu
from stereoforge.camera import Intrinsics
from stereoforge.dev.bench import numpy_reference_splat, synthetic_frames
from stereoforge.errors import InputError
from stereoforge.io.images import read_exr_channels, to_uint8_srgb
from stereoforge.io.video import VideoWriter
from stereoforge.pipeline import convert
from stereoforge.rig import StereoRig, eye_views
from stereoforge.spec import ConvertSpec
from stereoforge.splat import splat_eye, uses_cpu_kernel

H, W = 40, 72


def clip(frames: int, height: int = H, width: int = W) -> tuple[torch.Tensor, torch.Tensor]:
    """(frames, 3, H, W) colour and (frames, H, W) metric depth of the bench's synthetic clip, with a few
    pixels of missing depth."""
    rgb, depth = zip(*synthetic_frames(frames, height, width), strict=True)
    color = torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2).contiguous()
    depth = torch.from_numpy(np.stack(depth))
    depth[:, 3, 5] = float("nan")
    depth[:, 7, 9:12] = float("inf")
    depth[:, 9, 2] = -1.0
    return color, depth


def assert_same_eye(a, b, atol: float = 0.0) -> None:
    if atol == 0.0:
        assert torch.equal(a.rgba, b.rgba) and torch.equal(a.depth, b.depth) and torch.equal(a.dropout, b.dropout)
        return
    torch.testing.assert_close(a.rgba, b.rgba, rtol=0, atol=atol)
    assert torch.equal(torch.isinf(a.depth), torch.isinf(b.depth))
    finite = torch.isfinite(a.depth)
    torch.testing.assert_close(a.depth[finite], b.depth[finite], rtol=atol, atol=0)
    assert torch.equal(a.dropout, b.dropout)


@pytest.mark.parametrize("mode", ["OFFAXIS", "PARALLEL", "TOE"])
@pytest.mark.parametrize("pivot", ["CENTER", "RIGHT"])
def test_compiled_kernels_match_the_torch_ops_on_any_number_of_threads(mode, pivot):
    """Sums taken in another order differ in the last bit; depth, coverage and dropout are the same. Rows (two
    taps) or frames (four taps) are independent, so how many threads share them changes nothing at all."""
    assert splat_cpu.available()  # numba is a dependency: the fast path must not fall back unnoticed
    color, depth = clip(5, 36, 150)
    depth[1, 10:14, :30] = 0.0
    k = Intrinsics.from_lens(150, 36)
    previous = torch.get_num_threads()
    try:
        for view in eye_views(StereoRig(0.4, 2.5, mode, pivot), k.fx).values():
            if view.is_source:
                continue
            assert uses_cpu_kernel(view, color.device)
            torch.set_num_threads(1)
            compiled = splat_eye(color, depth, k, view)
            ops = splat_eye(color, depth, k, view, compiled=False)
            assert_same_eye(compiled, ops, atol=1e-6)
            assert not torch.equal(compiled.rgba, ops.rgba)  # two implementations, not one called twice
            assert compiled.dropout.any() and not compiled.dropout.all()
            torch.set_num_threads(3)  # more threads than this machine has cores: still 12 blocks of rows
            assert_same_eye(splat_eye(color, depth, k, view), compiled)
            threaded = [torch.empty_like(t) for t in (compiled.rgba, compiled.depth, compiled.dropout)]
            outputs = [t.numpy() for t in threaded]
            if mode == "TOE":
                splat_cpu.splat_general(color.numpy(), depth.numpy(), (k.fx, k.fy, k.cx, k.cy), view.source_to_eye,
                                        view.shift_px, 1e-6, 0.05, 0.5, *outputs, threads=3)
            else:
                splat_cpu.splat_rows_kept(color.numpy(), depth.numpy(), k.fx * float(view.source_to_eye[0, 3]),
                                          view.shift_px, 1e-6, 0.05, 0.5, *outputs, threads=3)
            for ours, theirs in zip(threaded, (compiled.rgba, compiled.depth, compiled.dropout), strict=True):
                assert torch.equal(ours, theirs)
    finally:
        torch.set_num_threads(previous)


def test_the_compiled_kernels_are_for_float32_cpu_eyes_only():
    k = Intrinsics.from_lens(W, H)
    offaxis = eye_views(StereoRig(0.3, 2.5, "OFFAXIS", "CENTER"), k.fx)["left"]
    toe = eye_views(StereoRig(0.3, 2.5, "TOE", "CENTER"), k.fx)["left"]
    source = eye_views(StereoRig(0.3, 2.5, "OFFAXIS", "LEFT"), k.fx)["left"]
    assert uses_cpu_kernel(offaxis, torch.device("cpu"), torch.float16)
    assert uses_cpu_kernel(toe, torch.device("cpu"))
    assert not uses_cpu_kernel(source, torch.device("cpu"))  # the source view itself: nothing to splat
    assert not uses_cpu_kernel(offaxis, torch.device("cpu"), torch.float64)
    assert not uses_cpu_kernel(offaxis, torch.device("cuda"))
    color, depth = clip(2)
    double = splat_eye(color.double(), depth.double(), k, offaxis)  # the torch ops, in float64
    assert double.rgba.dtype == torch.float64
    single = type(double)(double.rgba.float(), double.depth.float(), double.dropout)
    assert_same_eye(single, splat_eye(color, depth, k, offaxis), atol=1e-5)


@pytest.mark.parametrize("mode", ["OFFAXIS", "PARALLEL"])
@pytest.mark.parametrize("pivot", ["CENTER", "LEFT"])
@pytest.mark.parametrize("compiled", [True, False])
def test_two_tap_path_matches_the_general_path(mode, pivot, compiled):
    color, depth = clip(3)
    k = Intrinsics.from_lens(W, H)
    for view in eye_views(StereoRig(0.3, 2.5, mode, pivot), k.fx).values():
        fast = splat_eye(color, depth, k, view, compiled=compiled)
        general = splat_eye(color, depth, k, view, general_path=True, compiled=compiled)
        assert_same_eye(fast, general, atol=1e-5)
        if not view.is_source:
            assert fast.dropout.any() and not fast.dropout.all()  # the scene has disocclusions to fill


@pytest.mark.parametrize("mode", ["OFFAXIS", "TOE"])
def test_frames_do_not_depend_on_batch_size_or_on_halves(mode):
    color, depth = clip(10)
    k = Intrinsics.from_lens(W, H)
    for view in eye_views(StereoRig(0.2, 2.5, mode, "CENTER"), k.fx).values():
        whole = splat_eye(color, depth, k, view)
        for parts in ([slice(0, 5), slice(5, 10)], [slice(0, 4), slice(4, 8), slice(8, 10)],
                      [slice(n, n + 1) for n in range(10)]):
            pieces = [splat_eye(color[p], depth[p], k, view) for p in parts]
            for field in ("rgba", "depth", "dropout"):
                joined = torch.cat([getattr(piece, field) for piece in pieces])
                assert torch.equal(joined, getattr(whole, field)), (field, parts)


def whole_pixel_scene():
    """Depths of 1, 2 and 4 m with f = 64 px and eyes 0.0625 m either side of the centre: the disparities
    f e / Z are 4, 2 and 1 px, and OFFAXIS at 2 m shifts by 2 px: every point lands on a pixel centre."""
    rng = np.random.default_rng(3)
    height, width = 24, 48
    depth = np.full((2, height, width), 4.0, np.float32)
    depth[:, 4:18, 10:26] = 2.0
    depth[0, 8:14, 14:20] = 1.0
    depth[1, 2:9, 30:37] = 1.0
    depth[1, 20, 5:9] = np.nan
    color = rng.random((2, 3, height, width), dtype=np.float32)
    return color, depth, Intrinsics.from_focal(width, height, 64.0)


@pytest.mark.parametrize("mode", ["OFFAXIS", "PARALLEL"])
@pytest.mark.parametrize("compiled", [True, False])
def test_numpy_reference_agrees_where_disparities_are_whole_pixels(mode, compiled):
    color, depth, k = whole_pixel_scene()
    for view in eye_views(StereoRig(0.125, 2.0, mode, "CENTER"), k.fx).values():
        rgb, ref_depth, ref_dropout = numpy_reference_splat(color, depth, k, view)
        ours = splat_eye(torch.from_numpy(color), torch.from_numpy(depth), k, view, compiled=compiled)
        assert ref_dropout.any()
        assert np.array_equal(ours.dropout.numpy(), ref_dropout)
        alpha = ours.rgba[:, 3].numpy()
        assert np.array_equal(alpha, np.where(ref_dropout, 0.0, 1.0).astype(np.float32))
        np.testing.assert_allclose(ours.rgba[:, :3].numpy(), rgb, rtol=0, atol=1e-6)
        np.testing.assert_allclose(ours.depth.numpy(), ref_depth, rtol=1e-6)


@pytest.mark.parametrize("compiled", [True, False])
def test_depth_is_the_nearest_surface_and_a_tap_that_weighs_nothing_sets_none(compiled):
    """f e = 64 * 0.0625 = 4 px m: a point of column j at Z lands at j - 4 / Z in the right eye.

    Row 0: red at Z = 2 from column 5 lands on pixel 3 exactly (its right tap weighs nothing); green at Z = 2.3
    from column 6 lands at 4.26087: 0.73913 on pixel 4, 0.26087 on pixel 5. Pixel 4 is green alone, at 2.3.
    Row 1: red as before; green at Z = 1.95 lands at 3.94872: 0.05128 on pixel 3, 0.94872 on pixel 4. Both are
    within 5 % in depth at pixel 3: one layer, weight 1.05128, covering it; its depth is the nearer one, 1.95.
    """
    k = Intrinsics.from_focal(12, 2, 64.0)
    right = eye_views(StereoRig(0.0625, 4.0, "PARALLEL", "LEFT"), k.fx)["right"]
    depth = torch.full((1, 2, 12), float("nan"))
    depth[0, :, 5] = 2.0
    depth[0, 0, 6], depth[0, 1, 6] = 2.3, 1.95
    color = torch.zeros(1, 3, 2, 12)
    color[0, 0, :, 5] = 1.0  # red
    color[0, 1, :, 6] = 1.0  # green
    eye = splat_eye(color, depth, k, right, compiled=compiled)
    rgba, z = eye.rgba[0].numpy(), eye.depth[0].numpy()
    green = 4 / 2.3 - 1
    np.testing.assert_allclose(rgba[:, 0, 3:6], [[1, 0, 0], [0, green, 1 - green], [0, 0, 0],
                                                 [1, green, 1 - green]], atol=1e-5)
    np.testing.assert_allclose(z[0, 3:6], [2.0, 2.3, 2.3], rtol=1e-6)
    weight = 1 + (4 / 1.95 - 2)
    np.testing.assert_allclose(rgba[:, 1, 3], [1 / weight, (weight - 1) / weight, 0, 1], atol=1e-5)
    np.testing.assert_allclose(z[1, 3:5], [1.95, 1.95], rtol=1e-6)
    assert np.isinf(z[:, :3]).all() and np.isinf(z[:, 6:]).all()
    assert eye.dropout[0, 0, 5] and not eye.dropout[0, 0, 4]  # 0.26 covered: under the threshold of 0.5


def test_numpy_reference_refuses_eyes_that_turn():
    color, depth, k = whole_pixel_scene()
    view = eye_views(StereoRig(0.125, 2.0, "TOE", "CENTER"), k.fx)["left"]
    with pytest.raises(InputError, match="PARALLEL or OFFAXIS"):
        numpy_reference_splat(color, depth, k, view)


def test_convert_of_two_halves_writes_the_frames_of_one_run(tmp_path):
    """The seam a farm will cut a shot at: frame n of the second half is frame n + 5 of the whole run."""
    frames, height, width = 10, 32, 48
    video, depth_path = tmp_path / "clip.mp4", tmp_path / "depth.npy"
    rgb, depth = zip(*synthetic_frames(frames, height, width), strict=True)
    with VideoWriter(video, width, height, 24.0) as writer:
        for frame in rgb:
            writer.write(to_uint8_srgb(frame))
    np.save(depth_path, np.stack(depth))

    def run(name: str, first: int, last: int):
        # Metric depth and a fixed rig: what a farm's job spec pins, so that no half works out its own.
        spec = ConvertSpec(source=str(video), output_dir=str(tmp_path / name), depth=str(depth_path),
                           depth_kind="metric", convergence_distance=2.5, interocular=0.065, frames=(first, last),
                           cloud=False, batch=4, device="cpu", keep=("eyes", "masks", "filled"))
        assert convert(spec)["frames"] == last - first + 1
        return tmp_path / name

    whole, first, second = run("whole", 1, 10), run("first", 1, 5), run("second", 6, 10)
    for half, offset in ((first, 0), (second, 5)):
        for n in range(1, 6):
            for eye in ("left", "right"):
                ours = read_exr_channels(half / "eyes" / eye / f"{n:06d}.exr")
                theirs = read_exr_channels(whole / "eyes" / eye / f"{n + offset:06d}.exr")
                assert ours.keys() == theirs.keys()
                for channel in ours:
                    assert np.array_equal(ours[channel], theirs[channel], equal_nan=True), (half.name, n, eye)
                mask = (half / "masks" / eye / f"{n:06d}.png").read_bytes()
                assert mask == (whole / "masks" / eye / f"{n + offset:06d}.png").read_bytes()


@pytest.mark.parametrize("mode", ["OFFAXIS", "TOE"])
def test_an_eye_written_into_the_last_batch_tensors_is_the_same(mode):
    """convert and bench splat hand each batch the eye of the batch before, to write into."""
    color, depth = clip(4)
    k = Intrinsics.from_lens(W, H)
    for view in eye_views(StereoRig(0.2, 2.5, mode, "LEFT"), k.fx).values():
        first = splat_eye(color[:2], depth[:2], k, view)
        pointers = [t.data_ptr() for t in (first.rgba, first.depth, first.dropout)]
        second = splat_eye(color[2:], depth[2:], k, view, out=first)
        assert [t.data_ptr() for t in (second.rgba, second.depth, second.dropout)] == pointers
        assert_same_eye(second, splat_eye(color[2:], depth[2:], k, view), atol=1e-7)  # (the source eye has NaN)
        with pytest.raises(ValueError, match="out does not fit"):
            splat_eye(color[:3], depth[:3], k, view, out=second)
