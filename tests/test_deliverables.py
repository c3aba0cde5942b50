"""Deliverables other tools take: multi-view EXR (read back by real Blender), ProRes and 10-bit H.265 with the
source's audio, VR180 with its spherical metadata, Matroska StereoMode and the VR players' file-name tags.

Blender runs as ``bpy`` 4.5 in a child process (its state is global, as in tests/test_addon.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import OpenEXR
import pytest

from stereoforge.camera import Intrinsics
from stereoforge.cli import main
from stereoforge.io.frames import open_source
from stereoforge.io.images import read_image, read_mask, to_uint8_srgb
from stereoforge.io.spherical import HALF_SPHERE_BOUNDS
from stereoforge.io.video import AudioClip, VideoWriter, probe_stereo
from stereoforge.rig import StereoRig, eye_views
from stereoforge.vr180 import eye_size, half_sphere_maps, to_half_sphere
from test_convert import FOCAL_PX, H, W, scene_depth, texture

FRAMES, FPS, RATE = 6, 12, 48000
AAC_FRAME = 1024  # samples per AAC packet


def make_source(path: Path, frames: int = FRAMES, audio_codec: str = "aac") -> Path:
    """A 12 fps H.264 clip with a stereo audio track (a 440 Hz tone) half a second long, written with PyAV."""
    container = av.open(str(path), "w")
    video = container.add_stream("libx264", rate=FPS)
    video.width, video.height, video.pix_fmt = W, H, "yuv420p"
    audio = container.add_stream(audio_codec, rate=RATE)
    audio.layout = "stereo"
    for k in range(frames):
        frame = av.VideoFrame.from_ndarray(texture(40 + k), format="rgb24")
        frame.pts = k
        container.mux(video.encode(frame))
    for k in range(frames * RATE // FPS // AAC_FRAME + 1):
        t = (np.arange(AAC_FRAME) + k * AAC_FRAME) / RATE
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = RATE, k * AAC_FRAME
        container.mux(audio.encode(frame))
    container.mux(video.encode())
    container.mux(audio.encode())
    container.close()
    return path


def audio_payloads(path: Path, since: float = 0.0, until: float = math.inf) -> list[bytes]:
    """The audio packets of a file, as bytes, that start from ``since`` to before ``until`` seconds."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return [bytes(p) for p in container.demux(stream)
                if p.pts is not None and since <= p.pts * p.time_base < until]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def convert(capsys, source: Path, depth: Path, shot: Path, *args: str) -> None:
    code = main(["convert", str(source), "--depth", str(depth), "--depth-kind", "metric", "-o", str(shot),
                 "--inpaint", "telea", "--no-cloud", "-q", *args])
    assert code == 0, capsys.readouterr().err


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("in")
    depth = folder / "depth.npy"
    np.save(depth, np.stack([scene_depth(offset=k) for k in range(FRAMES)]))
    return make_source(folder / "clip.mp4"), depth


# ---------------------------------------------------------------------------------------------- VR180


def ramp_eye(k: Intrinsics) -> np.ndarray:
    """An eye whose pixels hold their own centre coordinates: (u, v, 1)."""
    v, u = np.mgrid[0:k.height, 0:k.width].astype(np.float32) + 0.5
    return np.dstack([u, v, np.ones_like(u)])


def test_half_sphere_projection_at_pixels_worked_out_by_hand():
    k = Intrinsics.from_focal(W, H, FOCAL_PX)  # 96 x 64, f = 93.333 px: 27.2 degrees either side
    sphere = to_half_sphere(ramp_eye(k), k, 180)  # one pixel per degree, centres at half degrees
    # Row 79, column 109 look 10.5 degrees up and 19.5 to the right:
    # u = 48 + 93.333 tan(19.5) = 81.051, v = 32 - 93.333 tan(10.5) / cos(19.5) = 13.649.
    np.testing.assert_allclose(sphere[79, 109], [81.051, 13.649, 1.0], atol=1 / 32)  # OpenCV's 1/32 px steps
    # Straight ahead (half a degree off, each way) lands on the principal point's neighbours.
    np.testing.assert_allclose(sphere[89, 90, :2], [48 + 93.333 * math.tan(math.radians(0.5)),
                                                   32 - 93.333 * math.tan(math.radians(0.5))], atol=1 / 32)
    # Outside the camera's view (60.5 degrees right; 49.5 degrees up) the picture is black.
    assert sphere[79, 150].tolist() == [0, 0, 0] and sphere[40, 90].tolist() == [0, 0, 0]
    # An off-axis eye's lens shift moves its principal point, and with it where each direction lands.
    shifted = dataclasses.replace(k, cx=k.cx - 5)
    assert to_half_sphere(ramp_eye(shifted), shifted, 180)[79, 109, 0] == pytest.approx(76.051, abs=1 / 32)
    map_x, _ = half_sphere_maps(k, 180)
    # The camera sees 54.4 x 37.8 degrees straight ahead, about 6 % of 180 x 180 (a little less off the axes).
    assert 0.055 < (map_x >= 0).mean() < 0.0635
    assert eye_size(k) == 294  # 180 degrees at 93.333 px per radian, rounded up to even


def spherical_side_data(path: Path) -> tuple[list[int], int]:
    """The first decoded frame's AVSphericalMapping (projection, yaw, pitch, roll, bound left, top, right,
    bottom) and AVStereo3D type, as FFmpeg reads them from the file's boxes."""
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        found = {sd.type: bytes(sd) for sd in frame.side_data}
    Type = av.sidedata.sidedata.Type
    mapping = np.frombuffer(found[Type.SPHERICAL][:32], dtype=np.uint32).tolist()
    return mapping, int(np.frombuffer(found[Type.STEREO3D][:4], dtype=np.intc)[0])


def test_vr180_video_from_convert_reads_back_as_a_tagged_half_sphere(capsys, inputs, tmp_path):
    source, depth = inputs
    shot = tmp_path / "sh010"
    convert(capsys, source, depth, shot, "--layout", "vr180,sbs-half", "--vr-tags", "--keep", "filled")
    video = shot / "out" / "video" / "sh010_vr180_180_LR.mp4"
    assert (shot / "out" / "video" / "sh010_sbs-half_3dh.mp4").is_file()
    size = eye_size(Intrinsics.from_focal(W, H, FOCAL_PX))
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height, stream.frames) == (2 * size, size, FRAMES)
        assert [s.type for s in container.streams.audio] == ["audio"]
        first = next(container.decode(stream)).to_ndarray(format="rgb24")
    mapping, stereo = spherical_side_data(video)
    # AV_SPHERICAL_EQUIRECTANGULAR_TILE with a quarter of the width cropped off either side: 180 degrees.
    assert mapping[0] == 2 and mapping[4:8] == [HALF_SPHERE_BOUNDS[2], 0, HALF_SPHERE_BOUNDS[3], 0]
    assert stereo == 1 and probe_stereo(video) == "sbs"  # AV_STEREO3D_SIDEBYSIDE
    # Corners look 90 degrees away: black; the video holds the composite frames (H.264 at CRF 18).
    composite = to_uint8_srgb(read_image(shot / "out" / "frames" / "vr180" / "vr180_000001.png"))
    assert first[:4, :4].max() < 20 and first[-4:, -4:].max() < 20
    assert np.abs(first.astype(int) - composite).mean() < 3
    # A few pixels of each half, by the formulas of stereoforge.vr180's docstring, with each eye's principal
    # point moved by its off-axis lens shift: the filled eye's colour in that direction.
    rig = StereoRig(**json.loads((shot / "shot.json").read_text())["rig"])
    for half, (eye, view) in enumerate(eye_views(rig, FOCAL_PX).items()):
        filled = to_uint8_srgb(read_image(shot / "filled" / eye / "000001.png")).astype(np.float32)
        for i, j in ((size // 2, size // 2), (120, 160), (170, 130), (140, 110)):
            lon = math.pi * ((j + 0.5) / size - 0.5)
            lat = math.pi * (0.5 - (i + 0.5) / size)
            u = W / 2 - view.shift_px + FOCAL_PX * math.tan(lon) - 0.5  # array coordinates: centres at 0
            v = H / 2 - FOCAL_PX * math.tan(lat) / math.cos(lon) - 0.5
            c, r = int(u), int(v)
            fu, fv = u - c, v - r
            colour = ((1 - fv) * ((1 - fu) * filled[r, c] + fu * filled[r, c + 1])
                      + fv * ((1 - fu) * filled[r + 1, c] + fu * filled[r + 1, c + 1]))
            assert np.abs(composite[i, half * size + j] - colour).max() <= 1, (eye, i, j)  # 8-bit steps


# ------------------------------------------------------------------------------------------- editorial


def test_prores_mov_with_the_sources_audio_and_a_multiview_exr_blender_reads(capsys, inputs, tmp_path):
    source, depth = inputs
    shot = tmp_path / "sh020"
    convert(capsys, source, depth, shot, "--layout", "sbs,exr-multiview", "--codec", "prores", "--vr-tags",
            "--keep", "masks,filled")
    video = shot / "out" / "video" / "sh020_sbs_LR.mov"
    assert sorted(p.name for p in (shot / "out" / "video").iterdir()) == [video.name]  # no video for the EXR
    with av.open(str(video)) as container:
        v, a = container.streams.video[0], container.streams.audio[0]
        assert (v.codec_context.name, v.codec_context.profile, v.codec_context.pix_fmt) == (
            "prores", "HQ", "yuv422p10le")
        assert (v.width, v.height, v.frames, a.codec_context.name) == (2 * W, H, FRAMES, "aac")
    # The source's audio packets, copied as they are, for the clip's half second.
    copied = audio_payloads(video)
    assert copied and copied == audio_payloads(source, until=FRAMES / FPS)

    exr = shot / "out" / "frames" / "exr-multiview" / "exr-multiview_000001.exr"
    with OpenEXR.File(str(exr)) as f:
        assert f.header()["multiView"] == ["left", "right"]
    with OpenEXR.File(str(exr), separate_channels=True) as f:
        channels = {name: c.pixels for name, c in f.channels().items()}
    assert sorted(channels) == sorted(f"{view}.{c}" for view in ("left", "right") for c in ("R", "G", "B",
                                                                                            "dropout"))
    assert {c.dtype for c in channels.values()} == {np.dtype(np.float16)}
    eyes = {eye: read_image(shot / "filled" / eye / "000001.png") for eye in ("left", "right")}
    for eye, rgb in eyes.items():
        stored = np.dstack([channels[f"{eye}.{c}"] for c in "RGB"]).astype(np.float32)
        np.testing.assert_allclose(stored, rgb, rtol=1e-3, atol=1e-4)  # linear, to half float's precision
        dropout = read_mask(str(shot / "masks" / eye / "000001.png"))
        assert dropout.any() and np.array_equal(channels[f"{eye}.dropout"] == 1, dropout)

    # Real Blender opens it as a stereo pair and writes its own side-by-side of the two views.
    sbs = tmp_path / "blender_sbs.exr"
    script = f"""
import bpy, json
scene = bpy.context.scene
scene.render.use_multiview = True
scene.render.views_format = "STEREO_3D"
out = scene.render.image_settings
out.file_format, out.color_depth, out.views_format = "OPEN_EXR", "32", "STEREO_3D"
out.stereo_3d_format.display_mode = "SIDEBYSIDE"
out.stereo_3d_format.use_sidebyside_crosseyed = False
image = bpy.data.images.load({str(exr)!r})
image.save_render({str(sbs)!r}, scene=scene)
print("RESULT:", json.dumps({{"stereo": image.is_stereo_3d, "multiview": image.is_multiview}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT:")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    assert json.loads(lines[0].split(":", 1)[1]) == {"stereo": True, "multiview": True}
    with OpenEXR.File(str(sbs), separate_channels=True) as f:
        pair = np.dstack([f.channels()[c].pixels for c in "RGB"]).astype(np.float32)
    np.testing.assert_allclose(pair[:, :W], eyes["left"], rtol=2e-3, atol=1e-3)
    np.testing.assert_allclose(pair[:, W:], eyes["right"], rtol=2e-3, atol=1e-3)
    assert not np.allclose(eyes["left"], eyes["right"], atol=1e-3)  # the views are told apart


def test_audio_follows_the_frames_taken(capsys, inputs, tmp_path):
    source, depth = inputs
    shot = tmp_path / "sh030"
    convert(capsys, source, depth, shot, "--frames", "4:6", "--codec", "h265-10")
    copied = audio_payloads(shot / "out" / "video" / "sh030_sbs.mp4")
    # Frames 4 to 6 are the second quarter second: the packets that start there, and no earlier one.
    assert copied == audio_payloads(source, since=3 / FPS, until=FRAMES / FPS)
    assert len(copied) >= 0.25 * RATE // AAC_FRAME - 1 and copied[0] != audio_payloads(source)[0]


def write_clip(path: Path, codec: str, stereo: str | None = "sbs", audio: AudioClip | None = None) -> Path:
    with VideoWriter(path, 2 * W, H, 24, codec=codec, stereo=stereo, audio=audio) as video:
        for k in range(5):
            video.write(np.concatenate([texture(k), texture(k + 9)], axis=1))
    return path


# The mean error of a frame of colour noise (texture()) is mostly its colour subsampling: 4:4:4 keeps it.
# x265 is left out of the same-bytes check: on a busy machine 1 to 3 runs in 60 give other bytes even on one
# frame thread without its pool, in a bare PyAV script too (see io/video.py's ENCODER_THREADS).
@pytest.mark.parametrize("codec, ext, profile, pix_fmt, error, same_bytes", [
    ("prores", ".mov", "HQ", "yuv422p10le", 7, True),
    ("prores4444", ".mov", "4444", "yuv444p12le", 1, True),  # FFmpeg's ProRes decoder gives 4444 as 12-bit
    ("h264", ".mp4", "High", "yuv420p", 11, True),
    ("h265-10", ".mp4", "Main 10", "yuv420p10le", 11, False),
])
def test_editorial_codecs_read_back_and_give_the_same_bytes_twice(inputs, tmp_path, codec, ext, profile, pix_fmt,
                                                                  error, same_bytes):
    audio = AudioClip(str(inputs[0]))
    first = write_clip(tmp_path / f"a{ext}", codec, audio=audio)
    if same_bytes:
        assert sha256(first) == sha256(write_clip(tmp_path / f"b{ext}", codec, audio=audio))
    with av.open(str(first)) as container:
        context = container.streams.video[0].codec_context
        assert (context.profile, context.pix_fmt, len(container.streams.audio)) == (profile, pix_fmt, 1)
    _, linear = next(open_source(first).frames())  # decoded by the stream's own matrix tags
    decoded = to_uint8_srgb(linear).astype(int)
    expected = np.concatenate([texture(0), texture(9)], axis=1).astype(int)
    assert np.abs(decoded - expected).mean() < error


@pytest.mark.parametrize("codec", ["h265", "h265-10", "prores"])
def test_matroska_carries_stereo_mode_for_any_codec(tmp_path, codec):
    assert probe_stereo(write_clip(tmp_path / f"{codec}.mkv", codec)) == "sbs"
    assert probe_stereo(write_clip(tmp_path / f"{codec}-tb.mkv", codec, stereo="tb")) == "tb"


def refusal(capsys, source: Path, depth: Path, shot: Path, *args: str) -> str:
    """The one line a convert that must be refused up front prints; nothing is written."""
    code = main(["convert", str(source), "--depth", str(depth), "-o", str(shot), "-q", *args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and not shot.exists(), err
    return err


@pytest.mark.parametrize("args, message", [
    (("--codec", "prores", "--container", "mp4"), "--codec prores cannot go in --container mp4; use mov or mkv"),
    (("--layout", "vr180", "--container", "mkv"), "--layout vr180 needs --container mp4 or mov"),
])
def test_outputs_that_cannot_be_written_are_refused_in_one_line(capsys, inputs, tmp_path, args, message):
    assert message in refusal(capsys, *inputs, tmp_path / "shot", *args)


def test_audio_a_container_cannot_hold_is_refused_up_front_and_mkv_takes_it(capsys, inputs, tmp_path):
    source = make_source(tmp_path / "pcm.mov", audio_codec="pcm_s16le")  # .mov holds PCM, .mp4 does not
    depth = inputs[1]
    err = refusal(capsys, source, depth, tmp_path / "shot")
    assert "is pcm_s16le, which '.mp4' does not hold" in err and "--container mkv" in err
    convert(capsys, source, depth, tmp_path / "mkv", "--container", "mkv", "--codec", "h265")
    video = tmp_path / "mkv" / "out" / "video" / "mkv_sbs.mkv"
    assert audio_payloads(video) == audio_payloads(source) and probe_stereo(video) == "sbs"


@pytest.fixture
def busy_cores():
    """Every core kept busy by a spinning child process, as on a loaded CI machine: threads and processes are
    switched in and out mid-frame, which is where a race or a register state shows."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in os.sched_getaffinity(0)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


# At 600x160 FFmpeg 8's scaler, on a thread per core, wrote other chroma at its slices' seams for each 10-bit format.
@pytest.mark.parametrize("codec, ext", [("h264", ".mp4"), ("h265", ".mkv"), ("h265-10", ".mp4"),
                                        ("prores", ".mov"), ("prores4444", ".mov")])
def test_every_codec_gives_the_same_bytes_run_after_run_on_busy_cores(tmp_path, busy_cores, codec, ext):
    frames = [np.roll(texture(3, 160, 600), 4 * k, axis=1) for k in range(8)]
    digests = set()
    for run in range(4):
        with VideoWriter(tmp_path / f"{run}{ext}", 600, 160, 24, codec=codec, stereo="sbs") as video:
            for rgb in frames:
                video.write(rgb)
        digests.add(sha256(tmp_path / f"{run}{ext}"))
    assert len(digests) == 1, digests
