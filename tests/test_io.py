"""Frame, depth, image and video I/O, with real files written by the real encoders."""

from __future__ import annotations

from fractions import Fraction

import av
import cv2
import numpy as np
import OpenEXR
import pytest

from stereoforge.errors import InputError
from stereoforge.io.frames import _frames_from_seek, natural_key, open_depth, open_source
from stereoforge.io.images import (
    atomic_path,
    linear_to_srgb,
    read_depth_file,
    read_image,
    read_png8,
    srgb_to_linear,
    to_uint8_srgb,
    to_uint16_srgb,
    write_exr,
    write_png,
)
from stereoforge.io.video import VideoWriter, probe_stereo

H, W = 48, 64


def pattern(i: int, height: int = H, width: int = W) -> np.ndarray:
    """A smooth, moving uint8 RGB test frame (codecs keep smooth pictures well)."""
    y, x = np.mgrid[0:height, 0:width]
    red = x * 200 // (width - 1) + 5 * i
    green = y * 255 // (height - 1)
    blue = np.full_like(x, 40 + 20 * i)
    return np.stack([red, green, blue], axis=-1).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def write_video(path, count=10, **kwargs) -> list[np.ndarray]:
    frames = [pattern(i) for i in range(count)]
    with VideoWriter(path, W, H, 24.0, **kwargs) as video:
        for frame in frames:
            video.write(frame)
    return frames


def write_exr_raw(path, channels: dict[str, np.ndarray]) -> None:
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, channels) as exr:
        exr.write(str(path))


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


# ------------------------------------------------------------------------------------------------- sRGB


def test_srgb_known_values():
    assert linear_to_srgb(np.float32(0.5)) == pytest.approx(0.7353569, abs=1e-6)
    assert srgb_to_linear(np.float32(0.7353569)) == pytest.approx(0.5, abs=1e-6)
    # Linear segment below the knees, and the ends of the range.
    assert linear_to_srgb(np.float32(0.002)) == pytest.approx(0.002 * 12.92, rel=1e-6)
    assert srgb_to_linear(np.float32(0.04)) == pytest.approx(0.04 / 12.92, rel=1e-6)
    assert srgb_to_linear(np.array([0.0, 1.0])).tolist() == pytest.approx([0.0, 1.0], abs=1e-7)
    assert to_uint8_srgb(np.array([0.5, -1.0, 2.0])).tolist() == [188, 0, 255]
    assert to_uint16_srgb(np.array([0.5])).tolist() == [48192]


def test_srgb_round_trip_numpy_and_torch():
    x = np.linspace(0, 1, 1001, dtype=np.float32)
    back = srgb_to_linear(linear_to_srgb(x))
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, x, atol=2e-6)

    torch = pytest.importorskip("torch")
    t = torch.linspace(0, 1, 1001, dtype=torch.float64)
    assert isinstance(linear_to_srgb(t), torch.Tensor)
    from_numpy = linear_to_srgb(t.numpy().astype(np.float32))
    np.testing.assert_allclose(linear_to_srgb(t).numpy(), from_numpy, atol=1e-6)
    torch.testing.assert_close(srgb_to_linear(linear_to_srgb(t)), t)


# ----------------------------------------------------------------------------------------------- images


def test_png_8bit_round_trip_keeps_rgb_order(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)
    write_png(tmp_path / "a.png", rgb)
    # OpenCV reads BGR: the file itself must hold red in the red channel.
    assert cv2.imread(str(tmp_path / "a.png"))[0, 0].tolist() == [0, 0, 255]
    linear = read_image(tmp_path / "a.png")
    assert linear.dtype == np.float32 and linear.shape == (H, W, 3)
    np.testing.assert_array_equal(to_uint8_srgb(linear), rgb)


def test_a_fast_png_is_stored_not_deflated_and_holds_the_same_pixels(tmp_path):
    """``write_png(fast=True)`` (the filled eyes, read back soon): the pixels stored as they are, so the file is
    larger than the raw pixels, and it reads back as the deflated one does."""
    flat = np.zeros((H, W, 3), np.uint8)
    flat[H // 2:, :, 1] = 200  # compresses to almost nothing when deflated
    write_png(tmp_path / "fast.png", flat, fast=True)
    write_png(tmp_path / "small.png", flat)
    assert (tmp_path / "fast.png").stat().st_size > flat.nbytes > 20 * (tmp_path / "small.png").stat().st_size
    np.testing.assert_array_equal(read_png8(tmp_path / "fast.png"), flat)
    np.testing.assert_array_equal(read_png8(tmp_path / "small.png"), flat)


def test_png_16bit_grey_and_rgba(tmp_path):
    rgb16 = np.random.default_rng(1).integers(0, 65536, (H, W, 3), dtype=np.uint16)
    write_png(tmp_path / "deep.png", rgb16)
    back = to_uint16_srgb(read_image(tmp_path / "deep.png"))
    assert np.abs(back.astype(np.int64) - rgb16).max() <= 1

    grey = np.arange(H * W, dtype=np.uint16).reshape(H, W)
    write_png(tmp_path / "grey.png", grey)
    image = read_image(tmp_path / "grey.png")
    assert image.shape == (H, W, 3)
    np.testing.assert_array_equal(image[..., 0], image[..., 2])

    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., 2] = 255  # blue, fully transparent
    write_png(tmp_path / "rgba.png", rgba)
    image = read_image(tmp_path / "rgba.png")
    assert image.shape == (H, W, 3)
    assert image[0, 0].tolist() == [0.0, 0.0, 1.0]


def test_exr_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    eye = {c: rng.random((H, W), dtype=np.float32) * 4 for c in "RGBA"}
    write_exr(tmp_path / "eye.exr", eye)
    rgb = read_image(tmp_path / "eye.exr")
    np.testing.assert_array_equal(rgb, np.stack([eye["R"], eye["G"], eye["B"]], axis=-1))

    write_exr(tmp_path / "half.exr", eye, half=True)
    with OpenEXR.File(str(tmp_path / "half.exr"), separate_channels=True) as exr:
        assert exr.channels()["A"].pixels.dtype == np.float16
    np.testing.assert_allclose(read_image(tmp_path / "half.exr")[..., 0], eye["R"], rtol=1e-3)

    write_exr(tmp_path / "grey.exr", {"Y": eye["R"]})
    assert np.array_equal(read_image(tmp_path / "grey.exr")[..., 1], eye["R"])


def test_read_image_missing_and_broken_files(tmp_path):
    with pytest.raises(InputError, match="nope.png"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match="broken.jpg"):
        read_image(tmp_path / "broken.jpg")
    (tmp_path / "broken.exr").write_bytes(b"not an exr")
    with pytest.raises(InputError, match="broken.exr"):
        read_image(tmp_path / "broken.exr")


# ------------------------------------------------------------------------------------------------ depth


def test_depth_readers_for_each_format(tmp_path):
    depth = np.random.default_rng(3).uniform(0.5, 80, (H, W)).astype(np.float32)

    np.save(tmp_path / "d2.npy", depth)
    np.save(tmp_path / "d3.npy", depth[None])
    np.save(tmp_path / "d3last.npy", depth[..., None])
    for name in ("d2.npy", "d3.npy", "d3last.npy"):
        np.testing.assert_array_equal(read_depth_file(tmp_path / name), depth)

    write_exr(tmp_path / "z.exr", {"Z": depth, "R": depth * 0})
    np.testing.assert_array_equal(read_depth_file(tmp_path / "z.exr"), depth)

    # Blender multilayer: the colour pass beside the depth pass; the depth pass must win.
    write_exr_raw(tmp_path / "blender.exr", {
        "ViewLayer.Combined.R": depth * 0, "ViewLayer.Combined.G": depth * 0,
        "ViewLayer.Combined.B": depth * 0, "ViewLayer.Combined.A": depth * 0 + 1,
        "ViewLayer.Depth.Z": depth,
    })
    np.testing.assert_array_equal(read_depth_file(tmp_path / "blender.exr"), depth)

    raw16 = (depth * 500).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "d16.png"), raw16)
    cv2.imwrite(str(tmp_path / "d16.tif"), raw16)
    cv2.imwrite(str(tmp_path / "dfloat.tif"), depth)
    np.testing.assert_array_equal(read_depth_file(tmp_path / "d16.png"), raw16.astype(np.float32))
    np.testing.assert_array_equal(read_depth_file(tmp_path / "d16.tif"), raw16.astype(np.float32))
    np.testing.assert_array_equal(read_depth_file(tmp_path / "dfloat.tif"), depth)


def test_depth_8bit_and_unknown_channels_refused(tmp_path):
    cv2.imwrite(str(tmp_path / "d8.png"), np.full((H, W), 7, np.uint8))
    with pytest.raises(InputError, match=r"d8\.png.*8-bit.*16-bit"):
        read_depth_file(tmp_path / "d8.png")
    zeros = np.zeros((H, W), np.float32)
    write_exr_raw(tmp_path / "noz.exr", {"U": zeros, "V": zeros})
    with pytest.raises(InputError, match=r"noz\.exr.*'Z'"):
        read_depth_file(tmp_path / "noz.exr")


def test_open_depth_stack_folder_and_selection(tmp_path):
    clip = np.arange(6 * H * W, dtype=np.float32).reshape(6, H, W)
    np.save(tmp_path / "clip.npy", clip)

    whole = open_depth(tmp_path / "clip.npy", 6, None, (H, W))
    assert isinstance(whole.stack, np.memmap)  # stays on disk
    assert [d[0, 0] for _, d in whole.frames()] == [clip[k, 0, 0] for k in range(6)]

    # Source frames 2..4 selected, depth given for the whole source: the same selection applies.
    part = open_depth(tmp_path / "clip.npy", 3, (2, 5), (H, W), total=6)
    assert [(i, d[0, 0]) for i, d in part.frames()] == [(0, clip[2, 0, 0]), (1, clip[3, 0, 0]),
                                                        (2, clip[4, 0, 0])]
    # Depth made for the selection only.
    np.save(tmp_path / "sel.npy", clip[2:5])
    assert [(i, d[0, 0]) for i, d in part.frames(start=2)] == [(2, clip[4, 0, 0])]
    first = next(open_depth(tmp_path / "sel.npy", 3, (2, 5), (H, W), total=6).frames())[1]
    assert first[0, 0] == clip[2, 0, 0]

    np.savez(tmp_path / "clip.npz", other=np.zeros(3), depth=clip)
    assert open_depth(tmp_path / "clip.npz", 6, None, (H, W)).count == 6

    folder = tmp_path / "depth"
    folder.mkdir()
    for k in (1, 2, 10):
        write_exr(folder / f"d{k}.exr", {"Z": np.full((H, W), k, np.float32)})
    assert [d[0, 0] for _, d in open_depth(folder, 3, None, (H, W)).frames()] == [1, 2, 10]
    assert [(i, d[0, 0]) for i, d in open_depth(folder, 3, None, (H, W)).frames(start=1)] == [(1, 2), (2, 10)]

    # A single image may take a one-frame stack.
    np.save(tmp_path / "one.npy", clip[:1])
    assert open_depth(tmp_path / "one.npy", 1, None, (H, W)).count == 1


def test_open_depth_count_and_size_mismatch_name_the_path(tmp_path):
    np.save(tmp_path / "clip.npy", np.zeros((4, H, W), np.float32))
    with pytest.raises(InputError, match=r"clip\.npy' has 4 frames but the source has 5"):
        open_depth(tmp_path / "clip.npy", 5, None, (H, W))
    with pytest.raises(InputError, match=r"clip\.npy' has 4 frames"):
        open_depth(tmp_path / "clip.npy", 2, (1, 3), (H, W), total=10)
    with pytest.raises(InputError, match=rf"clip\.npy' is {W}x{H} but the source frames are 32x16"):
        open_depth(tmp_path / "clip.npy", 4, None, (16, 32))

    folder = tmp_path / "depth"
    folder.mkdir()
    write_exr(folder / "0001.exr", {"Z": np.ones((H, W), np.float32)})
    write_exr(folder / "0002.exr", {"Z": np.ones((H, W + 2), np.float32)})
    with pytest.raises(InputError, match=r"0002\.exr' is"):
        open_depth(folder, 2, None, (H, W))


# ----------------------------------------------------------------------------------------------- folders


def test_folder_natural_sort_ignores_hidden_files(tmp_path):
    assert sorted(["frame10.png", "frame2.png", "Frame1.png"], key=natural_key) == [
        "Frame1.png", "frame2.png", "frame10.png"]
    for k in (1, 2, 10):
        write_png(tmp_path / f"frame{k}.png", np.full((H, W, 3), k * 20, np.uint8))
    write_png(tmp_path / ".frame0.png", np.zeros((4, 4, 3), np.uint8))  # hidden, another size
    source = open_source(tmp_path)
    assert (source.kind, source.count, source.width, source.height, source.fps) == ("folder", 3, W, H, None)
    assert [to_uint8_srgb(rgb)[0, 0, 0] for _, rgb in source.frames()] == [20, 40, 200]

    selected = open_source(tmp_path, frames=(1, None))
    assert (selected.count, selected.first_index) == (2, 1)
    assert [to_uint8_srgb(rgb)[0, 0, 0] for _, rgb in selected.frames()] == [40, 200]
    assert [(i, to_uint8_srgb(rgb)[0, 0, 0]) for i, rgb in selected.frames(start=1)] == [(1, 200)]


def test_folder_size_mismatch_names_the_file(tmp_path):
    write_png(tmp_path / "f1.png", np.zeros((H, W, 3), np.uint8))
    write_png(tmp_path / "f2.jpg.png", np.zeros((H, W, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "f3.jpg"), np.zeros((H, W + 6, 3), np.uint8))
    with pytest.raises(InputError, match=rf"f3\.jpg' is {W + 6}x{H}"):
        open_source(tmp_path)


def test_single_image_source(tmp_path):
    write_exr(tmp_path / "still.exr", {c: np.full((H, W), 2.5, np.float32) for c in "RGB"})
    source = open_source(tmp_path / "still.exr")
    assert (source.kind, source.count, source.is_float) == ("image", 1, True)
    assert [rgb.max() for _, rgb in source.frames()] == [2.5]
    with pytest.raises(InputError, match="has 1 frames"):
        open_source(tmp_path / "still.exr", frames=(1, 2))


# ------------------------------------------------------------------------------------------------- video


def test_video_round_trip_and_selection(tmp_path):
    path = tmp_path / "clip.mp4"
    frames = write_video(path)
    source = open_source(path)
    assert (source.kind, source.count, source.width, source.height) == ("video", 10, W, H)
    assert source.fps == pytest.approx(24.0)
    decoded = [to_uint8_srgb(rgb) for _, rgb in source.frames()]
    assert len(decoded) == 10
    for original, back in zip(frames, decoded, strict=True):
        assert psnr(original, back) > 30

    selected = open_source(path, frames=(3, 7))
    assert (selected.count, selected.first_index, selected.total) == (4, 3, 10)
    picked = [(i, to_uint8_srgb(rgb)) for i, rgb in selected.frames()]
    assert [i for i, _ in picked] == [0, 1, 2, 3]
    for (_, back), expected in zip(picked, decoded[3:7], strict=True):
        np.testing.assert_array_equal(back, expected)

    with pytest.raises(InputError, match="has 10 frames"):
        open_source(path, frames=(8, 12))


def write_coded_video(path, codec: str, options: dict, pix_fmt: str, timestamps: list[int]) -> None:
    """A textured clip panning sideways (so that an inter-frame codec predicts and reorders frames), written
    with PyAV straight to ``codec``, one frame at each of ``timestamps`` (in 1/72 s)."""
    texture = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=24, options=options)
        stream.width, stream.height, stream.pix_fmt = 96, 64, pix_fmt
        stream.codec_context.time_base = Fraction(1, 72)
        for i, pts in enumerate(timestamps):
            frame = av.VideoFrame.from_ndarray(np.roll(texture, 3 * i, axis=1), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 72)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


GOP = {"g": "24", "keyint_min": "24", "sc_threshold": "0"}
EVEN, LATE, UNEVEN = [3 * i for i in range(60)], [500 + 3 * i for i in range(60)], [3 * i + i % 3 for i in range(60)]


@pytest.mark.parametrize("name, codec, options, pix_fmt, timestamps", [
    ("h264.mp4", "libx264", {**GOP, "bf": "3"}, "yuv420p", EVEN),
    ("h265.mp4", "libx265", {"x265-params": "keyint=24:min-keyint=24:scenecut=0:bframes=3:log-level=error"},
     "yuv420p", EVEN),
    ("late.mkv", "libx264", {**GOP, "bf": "2"}, "yuv420p", LATE),
    ("late.mp4", "libx264", {**GOP, "bf": "2"}, "yuv420p", LATE),
    ("uneven.mkv", "libx264", {**GOP, "bf": "3"}, "yuv420p", UNEVEN),
    ("mjpeg.mkv", "mjpeg", {}, "yuvj420p", EVEN),
], ids=["h264 b-frames", "h265", "mkv first pts 500", "mp4 first pts 500", "variable rate", "mjpeg all-intra"])
def test_video_frames_from_a_start_equal_sequential_decoding(tmp_path, name, codec, options, pix_fmt, timestamps):
    path = tmp_path / name
    write_coded_video(path, codec, options, pix_fmt, timestamps)
    source = open_source(path)
    sequential = [rgb for _, rgb in source.frames()]
    assert len(sequential) == 60
    numbers = source.index.display_index()
    keyframes = sorted(numbers[pts] for pts, key in zip(source.index.pts, source.index.keyframe, strict=True) if key)
    keyframe = keyframes[2]  # the third, so that a seek skips frames
    assert keyframe >= 2
    for start in (0, 1, keyframe, keyframe + 1, 59):
        read = list(source.frames(start))
        assert [i for i, _ in read] == list(range(start, 60))
        for i, rgb in read:
            np.testing.assert_array_equal(rgb, sequential[i], err_msg=f"frame {i} read from {start}")
    # It seeks: decoding starts at a later packet than the first, and lands where it can give the frame exactly.
    assert source.index.starts_for(keyframe + 1, numbers)[-1] > 0
    assert next(_frames_from_seek(path, source.index, keyframe + 1))[0] == keyframe + 1

    selected = open_source(path, frames=(20, 50))
    assert [(i, rgb.tobytes()) for i, rgb in selected.frames(start=25)] == [
        (i - 20, sequential[i].tobytes()) for i in range(45, 50)]


def test_broken_videos_raise_input_error(tmp_path):
    (tmp_path / "garbage.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with pytest.raises(InputError, match=r"cannot decode video '.*garbage\.mp4'"):
        open_source(tmp_path / "garbage.mp4")

    write_video(tmp_path / "whole.mp4")
    data = (tmp_path / "whole.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.mp4"):
        list(open_source(tmp_path / "cut.mp4").frames())
    with pytest.raises(InputError, match=r"cut\.mp4"):
        list(open_source(tmp_path / "cut.mp4").frames(start=3))


def test_odd_sizes_are_padded(tmp_path):
    with VideoWriter(tmp_path / "odd.mp4", 33, 17, 25) as video:
        video.write(np.zeros((17, 33, 3), np.uint8))
    source = open_source(tmp_path / "odd.mp4")
    assert (source.width, source.height, source.count) == (34, 18, 1)


# ------------------------------------------------------------------------------------------- atomicity


def test_atomic_writes_leave_no_temporary_files(tmp_path):
    write_png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    write_exr(tmp_path / "a.exr", {"Z": np.zeros((4, 4), np.float32)})
    write_video(tmp_path / "a.mp4", count=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.exr", "a.mp4", "a.png"]

    with pytest.raises(RuntimeError), atomic_path(tmp_path / "b.png") as temp:
        assert temp.parent == tmp_path and temp.name.startswith(".") and temp.suffix == ".png"
        temp.write_bytes(b"half a file")
        raise RuntimeError("crash while writing")
    with pytest.raises(RuntimeError), VideoWriter(tmp_path / "b.mp4", W, H, 24) as video:
        video.write(pattern(0))
        raise RuntimeError("crash while encoding")
    assert not (tmp_path / "b.png").exists() and not (tmp_path / "b.mp4").exists()
    assert leftovers(tmp_path) == []

    # A failed rewrite leaves the old file whole.
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "a.png") as temp:
        temp.write_bytes(b"")
        raise RuntimeError("crash")
    assert read_image(tmp_path / "a.png").shape == (4, 4, 3)
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------- stereo metadata


@pytest.mark.parametrize(("name", "codec", "stereo"), [
    ("sbs.mp4", "h264", "sbs"),
    ("tb.mp4", "h264", "tb"),
    ("sbs.mkv", "h264", "sbs"),
    ("tb.mkv", "h265", "tb"),
    ("sbs.mov", "h264", "sbs"),
])
def test_stereo_metadata_is_in_the_file(tmp_path, name, codec, stereo):
    write_video(tmp_path / name, count=3, codec=codec, stereo=stereo)
    assert probe_stereo(tmp_path / name) == stereo
    if name.endswith(".mkv"):
        # The Matroska StereoMode element itself: ID 0x53B8, 1-byte size, 1 = left-right, 3 = top-bottom.
        assert b"\x53\xb8\x81" + bytes([{"sbs": 1, "tb": 3}[stereo]]) in (tmp_path / name).read_bytes()


def test_mono_and_h265_mp4_carry_no_stereo_metadata(tmp_path):
    write_video(tmp_path / "mono.mp4", count=2)
    assert probe_stereo(tmp_path / "mono.mp4") is None
    # libx265 cannot write a frame-packing SEI and PyAV cannot set mp4 stereo boxes: use .mkv for H.265.
    writer = VideoWriter(tmp_path / "h265.mp4", W, H, 24, codec="h265", stereo="sbs")
    assert writer.stereo_metadata == ()
    with writer as video:
        video.write(pattern(0))
    assert probe_stereo(tmp_path / "h265.mp4") is None
    assert open_source(tmp_path / "h265.mp4").count == 1


def test_middlebury_pfm_disparity_reads_top_row_first(tmp_path):
    disparity = np.arange(12, dtype=np.float32).reshape(3, 4) + 1.0
    disparity[0, 0] = np.inf  # Middlebury marks unknown disparity as infinity
    path = tmp_path / "disp0.pfm"
    with open(path, "wb") as f:  # PFM: header, then little-endian rows from the bottom of the image up
        f.write(b"Pf\n4 3\n-1.0\n")
        f.write(np.flipud(disparity).astype("<f4").tobytes())
    got = read_depth_file(path)
    assert got.shape == (3, 4) and np.isinf(got[0, 0])
    assert np.array_equal(got[1:], disparity[1:]) and got[0, 3] == disparity[0, 3]


def _resident_kb_of_mapping(path) -> int:
    """Resident memory (kB) of this process's mappings of ``path``, from /proc/self/smaps."""
    total, inside = 0, False
    for line in open("/proc/self/smaps"):
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5:  # a mapping's first line: address range, perms, ...
            inside = line.rstrip().endswith(str(path))
        elif inside and head[0] == "Rss:":
            total += int(head[1])
    return total


def test_a_long_depth_stack_does_not_stay_in_memory_as_it_is_read(tmp_path):
    frames, h, w = 24, 256, 320  # 7.9 MB of float32
    np.save(tmp_path / "long.npy", np.random.default_rng(0).random((frames, h, w), dtype=np.float32) + 1.0)
    depth = open_depth(tmp_path / "long.npy", frames, None, (h, w))
    seen = 0
    for i, frame in depth.frames():
        assert frame[0, 0] == np.load(tmp_path / "long.npy", mmap_mode="r")[i, 0, 0]
        # At most about the frame just read is resident, not every frame so far.
        assert _resident_kb_of_mapping(tmp_path / "long.npy") <= h * w * 4 // 1024 + 64
        seen += 1
    assert seen == frames
