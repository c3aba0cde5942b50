"""End-to-end tests of ``stereoforge convert`` through the real command line.

Inputs are made here, small: 96x64 frames with a smooth random texture, and depth of a near rectangle (2 m) in
front of a plane (6 m). Most runs call ``stereoforge.cli.main`` in-process (capsys holds its output); a few run
``python -m stereoforge.cli`` to see the real exit status and stderr.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

import stereoforge
from stereoforge.cli import main
from stereoforge.errors import Cancelled, InputError
from stereoforge.io.frames import open_source
from stereoforge.io.images import read_depth_file, read_exr_channels, read_image, to_uint8_srgb
from stereoforge.io.video import VideoWriter, probe_stereo
from stereoforge.pipeline import convert
from stereoforge.plan import plan
from stereoforge.spec import ConvertSpec
from stereoforge.stages import RUN, Job

H, W = 64, 96
NEAR_M, FAR_M = 2.0, 6.0
RECT_ROWS, RECT_COLS = slice(20, 44), slice(36, 60)  # the near rectangle
RECT_CENTRE_COL = 48
FOCAL_PX = W * 35.0 / 36.0  # the default: a 35 mm lens on a 36 mm-wide sensor
EYES = ("left", "right")
CLIP_FRAMES = 4


# ------------------------------------------------------------------------------------------------ helpers


def texture(seed: int, height: int = H, width: int = W) -> np.ndarray:
    """A smooth random uint8 RGB picture (every column different, so shifts are visible)."""
    coarse = np.random.default_rng(seed).random((height // 6 + 2, width // 6 + 2, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(smooth * 230 + 15.5, 0, 255).astype(np.uint8)


def scene_depth(offset: int = 0, height: int = H, width: int = W) -> np.ndarray:
    """Metric depth: a plane at 6 m and, ``offset`` columns to the right, a rectangle at 2 m."""
    depth = np.full((height, width), FAR_M, np.float32)
    depth[RECT_ROWS, RECT_COLS.start + offset:RECT_COLS.stop + offset] = NEAR_M
    return depth


def save_rgb(path: Path, rgb: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))
    return path


def load_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, f"cannot read '{path}'"
    return image[..., ::-1] if image.ndim == 3 else image


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in Path(folder).iterdir())


def snapshot(folder: Path, skip: tuple[str, ...] = ("shot.json",)) -> dict[str, tuple[int, int, int]]:
    """Every file under ``folder`` -> (inode, mtime_ns, size): a rewritten file changes at least its inode."""
    result = {}
    for p in sorted(Path(folder).rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and rel not in skip:
            st = p.stat()
            result[rel] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return result


def under(snap: dict, *prefixes: str) -> dict:
    return {k: v for k, v in snap.items() if k.startswith(prefixes)}


def temporaries(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*")
                  if p.name.startswith(".") or ".tmp" in p.name)


def cli(capsys, *args) -> tuple[int, str, str]:
    """``stereoforge convert ARGS`` in-process: (exit status, stdout, stderr)."""
    rc = main(["convert", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def meta(shot: Path) -> dict:
    return json.loads((shot / "shot.json").read_text())


def eye_channels(path: Path) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, np.float32) for k, v in read_exr_channels(path).items()}


def mask(shot: Path, eye: str, n: int = 1) -> np.ndarray:
    return load_rgb(shot / "masks" / eye / f"{n:06d}.png")


def cloud_points(usdc: Path, time: float = 1.0) -> np.ndarray:
    from pxr import Usd, UsdGeom

    stage = Usd.Stage.Open(str(usdc))
    assert stage, f"USD cannot open '{usdc}'"
    prim = stage.GetPrimAtPath("/Shot/Cloud")
    assert prim.IsValid() and prim.IsA(UsdGeom.Points), "/Shot/Cloud is not a UsdGeom.Points"
    return np.asarray(UsdGeom.Points(prim).GetPointsAttr().Get(time), np.float32).reshape(-1, 3)


def dropout_columns(m: np.ndarray, rows: slice = RECT_ROWS, border: int = 3) -> np.ndarray:
    """Columns (away from the image borders) with dropout somewhere in ``rows``."""
    return np.nonzero(m[rows, border:m.shape[1] - border].any(axis=0))[0] + border


class Inputs:
    """Input files made for one test; each is hashed when written and must be unchanged at the end."""

    def __init__(self, folder: Path):
        self.dir = folder
        self.dir.mkdir(parents=True, exist_ok=True)
        self.hashes: dict[Path, str] = {}

    def _track(self, path: Path) -> Path:
        self.hashes[path] = sha256(path)
        return path

    def image(self, name: str, rgb: np.ndarray) -> Path:
        path = self.dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return self._track(save_rgb(path, rgb))

    def npy(self, name: str, array: np.ndarray) -> Path:
        path = self.dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, array)
        return self._track(path)

    def npz(self, name: str, array: np.ndarray) -> Path:
        path = self.dir / name
        np.savez(path, depth=array)
        return self._track(path)

    def video(self, name: str, frames: list[np.ndarray], fps: float) -> Path:
        path = self.dir / name
        with VideoWriter(path, W, H, fps) as video:
            for frame in frames:
                video.write(frame)
        return self._track(path)

    def raw(self, name: str, data: bytes) -> Path:
        path = self.dir / name
        path.write_bytes(data)
        return self._track(path)

    def check(self) -> None:
        for path, digest in self.hashes.items():
            assert sha256(path) == digest, f"convert changed its input '{path}'"


@pytest.fixture
def inputs(tmp_path):
    made = Inputs(tmp_path / "in")
    yield made
    made.check()


@pytest.fixture
def clip(inputs):
    """A 4-frame clip three ways: a folder of PNGs with a folder of per-frame .npy depth, a 12 fps video with
    an .npz depth stack, and the same stack as one .npy. Frame k (1-based) has its rectangle k-1 columns right
    and, in the video's stack, a plane at 6 + k metres (so every depth frame is told apart)."""
    rgb = [texture(10 + k) for k in range(CLIP_FRAMES)]
    depth = np.stack([scene_depth(offset=k) for k in range(CLIP_FRAMES)])
    stack = depth.copy()
    for k in range(CLIP_FRAMES):
        stack[k][stack[k] == FAR_M] = FAR_M + k + 1
    for k in range(CLIP_FRAMES):
        inputs.image(f"frames/f{k + 1}.png", rgb[k])
        inputs.npy(f"depth/d{k + 1}.npy", depth[k])
    return SimpleNamespace(
        rgb=rgb, depth=depth, stack=stack, frames=inputs.dir / "frames", depth_dir=inputs.dir / "depth",
        video=inputs.video("clip.mp4", rgb, fps=12.0), npz=inputs.npz("stack.npz", stack),
        npy=inputs.npy("stack.npy", stack))


@pytest.fixture(scope="module")
def image_shot(tmp_path_factory):
    """One image with metric .npy depth, converted with every default, keeping the intermediates (run once for
    several tests)."""
    root = tmp_path_factory.mktemp("image")
    made = Inputs(root / "in")
    rgb = texture(1)
    depth = scene_depth()
    source, depth_path = made.image("frame.png", rgb), made.npy("depth.npy", depth)
    shot = root / "shot"
    rc = main(["convert", str(source), "--depth", str(depth_path), "--depth-kind", "metric", "-o", str(shot),
               "--keep", "eyes,masks,filled"])
    assert rc == 0
    made.check()
    return SimpleNamespace(source=source, depth_path=depth_path, rgb=rgb, depth=depth, shot=shot)


# ------------------------------------------------------------------------- 1. image + metric depth -> shot


def test_image_shot_has_source_and_metric_depth(image_shot):
    shot = image_shot.shot
    assert (shot / "shot.json").is_file()
    assert listing(shot / "source") == ["000001.png"]
    np.testing.assert_array_equal(load_rgb(shot / "source" / "000001.png"), image_shot.rgb)
    assert listing(shot / "depth") == ["000001.exr"]
    depth = read_depth_file(shot / "depth" / "000001.exr")
    assert depth.dtype == np.float32 and depth.shape == (H, W)
    np.testing.assert_array_equal(depth, image_shot.depth)


def test_image_shot_cloud_usd(image_shot):
    from pxr import Usd, UsdGeom

    stage = Usd.Stage.Open(str(image_shot.shot / "cloud.usdc"))
    assert UsdGeom.GetStageMetersPerUnit(stage) == 1.0
    assert UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.y
    points = cloud_points(image_shot.shot / "cloud.usdc", 1)
    # --cloud-stride 2 (the default) keeps every other pixel in each direction; all depth is valid.
    assert len(points) == math.ceil(H / 2) * math.ceil(W / 2)
    # Blender/USD camera space: the camera looks down -Z, so each point's -Z is its planar depth.
    assert sorted(set(np.round(-points[:, 2], 4).tolist())) == [NEAR_M, FAR_M]
    near = points[np.isclose(-points[:, 2], NEAR_M)]
    # The rectangle is right of the image centre (columns 36..59 of 96 -> x from -0.26 m to +0.25 m at 2 m)
    # and around the middle rows (+Y up).
    assert near[:, 0].min() == pytest.approx((36.5 - W / 2) / FOCAL_PX * NEAR_M, abs=1e-5)
    assert near[:, 0].max() == pytest.approx((58.5 - W / 2) / FOCAL_PX * NEAR_M, abs=1e-5)
    assert near[:, 1].max() == pytest.approx(-(20.5 - H / 2) / FOCAL_PX * NEAR_M, abs=1e-5)


def test_image_shot_eyes_and_masks(image_shot):
    shot = image_shot.shot
    for eye in EYES:
        assert listing(shot / "eyes" / eye) == ["000001.exr"]
        channels = eye_channels(shot / "eyes" / eye / "000001.exr")
        assert set(channels) == {"R", "G", "B", "A", "Z"}
        assert all(c.shape == (H, W) for c in channels.values())
        assert 0.0 <= channels["A"].min() and channels["A"].max() <= 1.0 + 1e-3

        assert listing(shot / "masks" / eye) == ["000001.png"]
        m = mask(shot, eye)
        assert m.dtype == np.uint8 and m.shape == (H, W)
        assert set(np.unique(m).tolist()) <= {0, 255}
        # Away from the rectangle and the image borders everything is covered.
        assert not m[:RECT_ROWS.start - 2, 3:W - 3].any() and not m[RECT_ROWS.stop + 2:, 3:W - 3].any()

    # Each eye sees background the centre view did not, on its own side of the near rectangle.
    left, right = dropout_columns(mask(shot, "left")), dropout_columns(mask(shot, "right"))
    assert left.size, "no dropout beside the near rectangle in the left eye"
    assert right.size, "no dropout beside the near rectangle in the right eye"
    assert left.max() < RECT_CENTRE_COL and left.min() >= RECT_COLS.start - 4, \
        f"left-eye dropout should be a strip on the rectangle's LEFT side, found columns {left.tolist()}"
    assert right.min() > RECT_CENTRE_COL and right.max() <= RECT_COLS.stop + 3, \
        f"right-eye dropout should be a strip on the rectangle's RIGHT side, found columns {right.tolist()}"


def test_image_shot_filled_composite_and_video(image_shot):
    shot = image_shot.shot
    filled = {}
    for eye in EYES:
        assert listing(shot / "filled" / eye) == ["000001.png"]
        filled[eye] = load_rgb(shot / "filled" / eye / "000001.png")
        assert filled[eye].shape == (H, W, 3) and filled[eye].dtype == np.uint8
        m = mask(shot, eye) > 0
        assert filled[eye][m].any(), f"the {eye} eye's dropout was left black"
    assert not np.array_equal(filled["left"], filled["right"])

    assert listing(shot / "out" / "frames") == ["sbs"]
    assert listing(shot / "out" / "frames" / "sbs") == ["sbs_000001.png"]
    sbs = load_rgb(shot / "out" / "frames" / "sbs" / "sbs_000001.png")
    assert sbs.shape == (H, 2 * W, 3)
    np.testing.assert_array_equal(sbs[:, :W], filled["left"])
    np.testing.assert_array_equal(sbs[:, W:], filled["right"])

    video = shot / "out" / "video" / f"{shot.name}_sbs.mp4"
    assert listing(shot / "out" / "video") == [video.name]
    opened = open_source(video)
    assert (opened.count, opened.width, opened.height) == (1, 2 * W, H)
    assert probe_stereo(video) == "sbs"


# ----------------------------------------------------------------------------------------- 2. shot.json


def test_shot_json_records_what_reproduces_the_shot(image_shot):
    shot = image_shot.shot
    m = meta(shot)
    spec = m["spec"]
    assert Path(spec["source"]) == image_shot.source and Path(spec["depth"]) == image_shot.depth_path
    assert spec["depth_kind"] == "metric" and spec["layouts"] == ["sbs"] and spec["cloud_stride"] == 2
    assert m["rig"]["interocular_distance"] == pytest.approx(0.065)
    # Default convergence: halfway between near and far in parallax, 1/C = (1/2 + 1/6) / 2.
    assert m["rig"]["convergence_distance"] == pytest.approx(3.0)
    assert m["rig"]["convergence_mode"] == "OFFAXIS" and m["rig"]["pivot"] == "CENTER"
    assert m["camera"]["focal_px"] == pytest.approx(FOCAL_PX, rel=1e-12)
    assert (m["camera"]["width"], m["camera"]["height"]) == (W, H)
    assert m["depth_range_m"] == pytest.approx([NEAR_M, FAR_M])
    assert m["frames"] == 1 and m["fps"] == pytest.approx(24.0)
    stages = m["stages"]
    assert set(stages) == {"ingest", "cloud", "eyes", "inpaint", "composite", "encode"}
    assert all(re.fullmatch(r"[0-9a-f]{8,}", v) for v in stages.values())
    versions = m["versions"]
    assert versions["stereoforge"] == stereoforge.__version__
    import torch

    assert versions["torch"] == torch.__version__ and versions["numpy"] == np.__version__
    assert versions["av"] and versions["usd"]

    # The recorded spec, read back, plans the same shot: the same fingerprints, camera and rig.
    again = plan(ConvertSpec.from_dict(spec))
    assert again.fingerprints() == stages
    assert again.rig.to_dict() == m["rig"]
    assert again.intrinsics.fx == m["camera"]["focal_px"]


def test_shot_json_paths_resolve_from_another_directory(inputs, tmp_path, monkeypatch, capsys):
    """The spec's paths must still find the inputs when shot.json is read from another working directory."""
    source, depth = inputs.image("frame.png", texture(2)), inputs.npy("depth.npy", scene_depth())
    monkeypatch.chdir(tmp_path)
    rc, _, err = cli(capsys, "in/frame.png", "--depth", "in/depth.npy", "--depth-kind", "metric", "-o", "shot",
                     "-q")
    assert rc == 0, err
    shot = tmp_path / "shot"
    spec = meta(shot)["spec"]
    monkeypatch.chdir(shot)
    for key, path in (("source", source), ("depth", depth)):
        recorded = spec[key]
        assert os.path.exists(recorded) and os.path.samefile(recorded, path), (
            f"shot.json records {key} as {recorded!r}, relative to the working directory of the run, so it "
            f"no longer names '{path}' when read from elsewhere (here: the shot folder); record absolute paths "
            "(shot_record.prepare_shot writes spec.to_dict() as given)")


# ------------------------------------------------------------------------------ 3. frame folders, videos


def test_folder_of_frames_with_folder_of_depth(clip, tmp_path, capsys):
    shot = tmp_path / "shot"
    rc, out, err = cli(capsys, clip.frames, "--depth", clip.depth_dir, "--depth-kind", "metric", "-o", shot)
    assert rc == 0, err
    names = [f"{k:06d}" for k in range(1, CLIP_FRAMES + 1)]
    assert listing(shot / "source") == [n + ".png" for n in names]
    assert listing(shot / "depth") == [n + ".exr" for n in names]
    for folder in ("eyes", "masks", "filled"):  # handed over in memory, not kept (no --keep)
        assert not (shot / folder).exists(), folder
    assert listing(shot / "out" / "frames" / "sbs") == [f"sbs_{n}.png" for n in names]
    for k in range(CLIP_FRAMES):
        np.testing.assert_array_equal(load_rgb(shot / "source" / f"{k + 1:06d}.png"), clip.rgb[k])
        np.testing.assert_array_equal(read_depth_file(shot / "depth" / f"{k + 1:06d}.exr"), clip.depth[k])
    for k in (1, 4):
        assert len(cloud_points(shot / "cloud.usdc", k)) == 32 * 48
    video = open_source(shot / "out" / "video" / "shot_sbs.mp4")
    assert (video.count, video.width, video.height) == (CLIP_FRAMES, 2 * W, H)
    assert meta(shot)["frames"] == CLIP_FRAMES
    assert f"{CLIP_FRAMES} frames at {W}x{H}" in out


def test_video_with_npz_depth_stack(clip, tmp_path, capsys):
    shot = tmp_path / "shot"
    rc, _, err = cli(capsys, clip.video, "--depth", clip.npz, "--depth-kind", "metric", "-o", shot, "-q")
    assert rc == 0, err
    assert listing(shot / "source") == [f"{k:06d}.png" for k in range(1, CLIP_FRAMES + 1)]
    decoded = [to_uint8_srgb(rgb) for _, rgb in open_source(clip.video).frames()]
    for k in range(CLIP_FRAMES):
        np.testing.assert_array_equal(load_rgb(shot / "source" / f"{k + 1:06d}.png"), decoded[k])
        np.testing.assert_array_equal(read_depth_file(shot / "depth" / f"{k + 1:06d}.exr"), clip.stack[k])
    m = meta(shot)
    assert m["frames"] == CLIP_FRAMES and m["fps"] == pytest.approx(12.0)
    assert m["source"]["kind"] == "video"
    video = open_source(shot / "out" / "video" / "shot_sbs.mp4")
    assert video.count == CLIP_FRAMES and video.fps == pytest.approx(12.0)


def test_frame_range_on_a_folder(clip, tmp_path, capsys):
    shot = tmp_path / "shot"
    rc, out, err = cli(capsys, clip.frames, "--depth", clip.depth_dir, "--depth-kind", "metric", "-o", shot,
                       "--frames", "2:3", "-q")
    assert rc == 0, err
    assert listing(shot / "source") == ["000001.png", "000002.png"]
    assert listing(shot / "depth") == ["000001.exr", "000002.exr"]
    assert listing(shot / "out" / "frames" / "sbs") == ["sbs_000001.png", "sbs_000002.png"]
    # Shot frames 1 and 2 are source frames 2 and 3, with their own depth.
    np.testing.assert_array_equal(load_rgb(shot / "source" / "000001.png"), clip.rgb[1])
    np.testing.assert_array_equal(load_rgb(shot / "source" / "000002.png"), clip.rgb[2])
    np.testing.assert_array_equal(read_depth_file(shot / "depth" / "000001.exr"), clip.depth[1])
    np.testing.assert_array_equal(read_depth_file(shot / "depth" / "000002.exr"), clip.depth[2])
    m = meta(shot)
    assert m["frames"] == 2 and m["source"]["first_frame"] == 2
    assert open_source(shot / "out" / "video" / "shot_sbs.mp4").count == 2
    assert "2 frames" in out


def test_frame_range_on_a_video_with_npy_stack(clip, tmp_path, capsys):
    shot = tmp_path / "shot"
    rc, _, err = cli(capsys, clip.video, "--depth", clip.npy, "--depth-kind", "metric", "-o", shot,
                     "--frames", "2:3", "-q")
    assert rc == 0, err
    assert listing(shot / "source") == ["000001.png", "000002.png"]
    decoded = [to_uint8_srgb(rgb) for _, rgb in open_source(clip.video).frames()]
    assert not np.array_equal(decoded[0], decoded[1])
    np.testing.assert_array_equal(load_rgb(shot / "source" / "000001.png"), decoded[1])
    np.testing.assert_array_equal(load_rgb(shot / "source" / "000002.png"), decoded[2])
    np.testing.assert_array_equal(read_depth_file(shot / "depth" / "000001.exr"), clip.stack[1])
    np.testing.assert_array_equal(read_depth_file(shot / "depth" / "000002.exr"), clip.stack[2])
    assert open_source(shot / "out" / "video" / "shot_sbs.mp4").count == 2


def test_a_job_with_a_chunk_writes_only_those_frames(clip, tmp_path):
    """A farm runner's job: ``chunk=(2, 3)`` of a 4-frame shot writes shot frames 2 and 3 (source frames 2 and
    3 of the video, with their own depth) through each stage's ``run``, and nothing of frames 1 and 4."""
    spec = ConvertSpec(source=str(clip.video), depth=str(clip.npy), depth_kind="metric", device="cpu",
                       output_dir=str(tmp_path / "shot"))
    job = Job(plan(spec), chunk=(2, 3))
    for stage in ("ingest", "eyes"):
        RUN[stage](job)
    shot = tmp_path / "shot"
    assert listing(shot / "source") == ["000002.png", "000003.png"]
    assert listing(shot / "depth") == ["000002.exr", "000003.exr"]
    assert listing(shot / "eyes" / "left") == ["000002.exr", "000003.exr"]
    assert listing(shot / "masks" / "right") == ["000002.png", "000003.png"]
    decoded = [to_uint8_srgb(rgb) for _, rgb in open_source(clip.video).frames()]
    np.testing.assert_array_equal(load_rgb(shot / "source" / "000002.png"), decoded[1])
    np.testing.assert_array_equal(read_depth_file(shot / "depth" / "000003.exr"), clip.stack[2])
    with pytest.raises(InputError, match="chunk 3:5 does not fit the shot's 4 frames"):
        Job(job.plan, chunk=(3, 5))


def test_depth_stack_longer_than_the_source_is_refused_with_a_frame_range(clip, inputs, tmp_path, capsys):
    """A 5-frame depth stack for a 4-frame source is refused without --frames; --frames 1:4 (all of it) must
    not make it acceptable."""
    five = inputs.npy("five.npy", np.concatenate([clip.depth, clip.depth[:1]]))
    rc, _, err = cli(capsys, clip.frames, "--depth", five, "--depth-kind", "metric", "-o", tmp_path / "a", "-q")
    assert rc == 2 and "5 frames" in err
    rc, _, err = cli(capsys, clip.frames, "--depth", five, "--depth-kind", "metric", "-o", tmp_path / "b", "-q",
                     "--frames", "1:4")
    assert rc == 2 and not (tmp_path / "b").exists(), (
        "a 5-frame depth stack for a 4-frame source is accepted once --frames is given (plan.plan calls "
        "open_depth without total=source.total, so the depth is only checked to have at least A+count frames)")


# --------------------------------------------------------------------------------------------- 4. layouts


def test_layouts(inputs, tmp_path, capsys):
    source, depth = inputs.image("frame.png", texture(3)), inputs.npy("depth.npy", scene_depth())
    shot = tmp_path / "shot"
    rc, out, err = cli(capsys, source, "--depth", depth, "--depth-kind", "metric", "-o", shot, "-q",
                       "--layout", "sbs-half,tb,tb-half,anaglyph,separate", "--keep", "filled")
    assert rc == 0, err
    streams = {"sbs-half": (H, W), "tb": (2 * H, W), "tb-half": (H, W), "anaglyph": (H, W), "left": (H, W),
               "right": (H, W)}
    assert listing(shot / "out" / "frames") == sorted(streams)
    frames = {}
    for stream, size in streams.items():
        assert listing(shot / "out" / "frames" / stream) == [f"{stream}_000001.png"]
        frames[stream] = load_rgb(shot / "out" / "frames" / stream / f"{stream}_000001.png")
        assert frames[stream].shape == (*size, 3), stream
    left, right = (load_rgb(shot / "filled" / eye / "000001.png") for eye in EYES)
    np.testing.assert_array_equal(frames["left"], left)
    np.testing.assert_array_equal(frames["right"], right)
    np.testing.assert_array_equal(frames["tb"], np.concatenate([left, right]))
    # The anaglyph is neither eye: red from the left, cyan from the right.
    assert not np.array_equal(frames["anaglyph"], left) and not np.array_equal(frames["anaglyph"], right)

    videos = shot / "out" / "video"
    assert listing(videos) == sorted(f"shot_{s}.mp4" for s in streams)
    for stream, size in streams.items():
        opened = open_source(videos / f"shot_{stream}.mp4")
        assert (opened.count, opened.height, opened.width) == (1, *size), stream
        assert f"video: {videos / f'shot_{stream}.mp4'}" in out
    assert probe_stereo(videos / "shot_tb.mp4") == "tb"
    assert probe_stereo(videos / "shot_tb-half.mp4") == "tb"
    assert probe_stereo(videos / "shot_sbs-half.mp4") == "sbs"
    assert probe_stereo(videos / "shot_anaglyph.mp4") is None
    assert probe_stereo(videos / "shot_left.mp4") is None


# ------------------------------------------------------------------------------------------ 5. depth kinds


def test_relative_depth_maps_to_near_and_far(inputs, tmp_path, capsys):
    inverse = (1.0 / scene_depth()).astype(np.float32) * 37.0  # affine-invariant: any scale
    source, depth = inputs.image("frame.png", texture(4)), inputs.npy("inverse.npy", inverse)
    shot = tmp_path / "shot"
    rc, _, err = cli(capsys, source, "--depth", depth, "--near", "1.5", "--far", "8", "-o", shot, "-q")
    assert rc == 0, err
    metric = read_depth_file(shot / "depth" / "000001.exr")
    assert metric.min() == pytest.approx(1.5, rel=1e-5) and metric.max() == pytest.approx(8.0, rel=1e-5)
    # Bigger relative values are nearer: the rectangle is the near end.
    assert np.allclose(metric[RECT_ROWS, RECT_COLS], 1.5, rtol=1e-5)
    m = meta(shot)
    assert m["spec"]["depth_kind"] == "relative"  # the default
    assert m["depth_range_m"] == pytest.approx([1.5, 8.0])


def test_disparity_reproduces_the_right_view(inputs, tmp_path, capsys):
    """4 px of disparity everywhere: the right eye is the left image moved 4 px to the left."""
    rgb, shift = texture(5), 4
    source = inputs.image("left.png", rgb)
    disparity = inputs.npy("disparity.npy", np.full((H, W), float(shift), np.float32))
    shot = tmp_path / "shot"
    rc, _, err = cli(capsys, source, "--depth", disparity, "--depth-kind", "disparity", "--baseline", "0.1",
                     "--pivot", "LEFT", "--convergence-mode", "PARALLEL", "-o", shot, "-q",
                     "--keep", "eyes,masks,filled")
    assert rc == 0, err
    metric = read_depth_file(shot / "depth" / "000001.exr")
    np.testing.assert_allclose(metric, FOCAL_PX * 0.1 / shift, rtol=1e-6)
    rig = meta(shot)["rig"]
    assert rig["interocular_distance"] == pytest.approx(0.1)  # the baseline
    assert (rig["convergence_mode"], rig["pivot"]) == ("PARALLEL", "LEFT")

    filled = load_rgb(shot / "filled" / "right" / "000001.png")
    assert np.abs(filled[:, :W - shift].astype(int) - rgb[:, shift:]).max() <= 1
    linear = read_image(source)
    right = eye_channels(shot / "eyes" / "right" / "000001.exr")
    eye_rgb = np.stack([right[c] for c in "RGB"], axis=-1)
    np.testing.assert_allclose(eye_rgb[:, :W - shift], linear[:, shift:], atol=2e-3)
    np.testing.assert_allclose(right["A"][:, :W - shift], 1.0, atol=1e-3)
    m = mask(shot, "right")
    assert (m[:, W - shift:] == 255).all() and not m[:, :W - shift].any()
    # The left eye is the source itself.
    left = eye_channels(shot / "eyes" / "left" / "000001.exr")
    np.testing.assert_allclose(np.stack([left[c] for c in "RGB"], axis=-1), linear, atol=2e-3)
    assert not mask(shot, "left").any()


# ------------------------------------------------------------------------------------------- 6. budget


@pytest.mark.parametrize("mode", ["OFFAXIS", "PARALLEL"])
def test_max_parallax_sets_the_interocular(inputs, tmp_path, capsys, mode):
    source, depth = inputs.image("frame.png", texture(6)), inputs.npy("depth.npy", scene_depth())
    shot = tmp_path / "shot"
    rc, _, err = cli(capsys, source, "--depth", depth, "--depth-kind", "metric", "--max-parallax", "2",
                     "--convergence-mode", mode, "-o", shot, "-q")
    assert rc == 0, err
    m = meta(shot)
    assert m["parallax_px"]["near"] == pytest.approx(-0.02 * W, rel=1e-6)
    inv_c = 0.0 if mode == "PARALLEL" else 1.0 / 3.0
    expected = 0.02 * W / (FOCAL_PX * (1.0 / NEAR_M - inv_c))
    assert m["rig"]["interocular_distance"] == pytest.approx(expected, rel=1e-9)
    if mode == "OFFAXIS":  # converging halfway in parallax: the far plane gets the opposite parallax
        assert m["parallax_px"]["far"] == pytest.approx(0.02 * W, rel=1e-6)


# --------------------------------------------------------------------------------------------- 7. resume


@pytest.fixture
def resumable(inputs, tmp_path):
    source, depth = inputs.image("frame.png", texture(7)), inputs.npy("depth.npy", scene_depth())
    args = [source, "--depth", depth, "--depth-kind", "metric", "-o", tmp_path / "shot", "--keep", "eyes,masks,filled"]
    return SimpleNamespace(args=args, shot=tmp_path / "shot")


def test_identical_rerun_rewrites_nothing(resumable, capsys):
    rc, _, err = cli(capsys, *resumable.args, "-q")
    assert rc == 0, err
    before = snapshot(resumable.shot)
    assert len(before) == 13  # source, depth, 3 cloud, 2 eyes, 2 masks, 2 filled, 1 sbs frame, 1 video
    rc, out, err = cli(capsys, *resumable.args)
    assert rc == 0, err
    assert snapshot(resumable.shot) == before
    assert "video:" in out and "changed" not in err


def test_deleted_frames_are_remade(resumable, capsys):
    shot = resumable.shot
    assert cli(capsys, *resumable.args, "-q")[0] == 0
    before = snapshot(shot)
    old_mask = (shot / "masks/right/000001.png").read_bytes()
    old_eye = eye_channels(shot / "eyes/right/000001.exr")
    (shot / "masks/right/000001.png").unlink()
    (shot / "eyes/right/000001.exr").unlink()
    assert cli(capsys, *resumable.args, "-q")[0] == 0
    assert (shot / "masks/right/000001.png").read_bytes() == old_mask
    new_eye = eye_channels(shot / "eyes/right/000001.exr")
    assert set(new_eye) == set(old_eye)
    for c in old_eye:
        np.testing.assert_array_equal(new_eye[c], old_eye[c])
    after = snapshot(shot)
    assert set(after) == set(before)
    kept = ("source/", "depth/", "cloud", "filled/", "out/")
    assert under(after, *kept) == under(before, *kept)


def test_changed_interocular_remakes_only_the_eyes_and_after(resumable, capsys):
    shot = resumable.shot
    assert cli(capsys, *resumable.args, "-q")[0] == 0
    before = snapshot(shot)
    old_eye = eye_channels(shot / "eyes/left/000001.exr")
    rc, _, err = cli(capsys, *resumable.args, "--interocular", "0.2")
    assert rc == 0, err
    after = snapshot(shot)
    assert set(after) == set(before)
    assert "eyes" in err and "changed" in err, f"no notice that the eyes are remade; stderr: {err!r}"
    for rel in under(before, "eyes/", "masks/", "filled/", "out/"):
        assert after[rel] != before[rel], f"'{rel}' was not remade after --interocular changed"
    assert not np.array_equal(eye_channels(shot / "eyes/left/000001.exr")["R"], old_eye["R"])
    assert meta(shot)["rig"]["interocular_distance"] == pytest.approx(0.2)
    # The per-frame clips stay; only the small cloud.usdc, which records the rig, is rewritten.
    kept = under(before, "source/", "depth/", "cloud/")
    assert under(after, "source/", "depth/", "cloud/") == kept, (
        f"changing --interocular (metric depth) remade source/, depth/ or the point clouds; stderr: {err!r}")


def test_changed_convergence_updates_the_rig_recorded_in_cloud_usd(resumable, capsys):
    from pxr import Usd

    shot = resumable.shot
    assert cli(capsys, *resumable.args, "-q")[0] == 0
    before = snapshot(shot)
    rc, _, err = cli(capsys, *resumable.args, "--convergence-distance", "5", "-q")
    assert rc == 0, err
    after = snapshot(shot)
    assert under(after, "source/", "depth/") == under(before, "source/", "depth/")
    assert meta(shot)["rig"]["convergence_distance"] == pytest.approx(5.0)
    stage = Usd.Stage.Open(str(shot / "cloud.usdc"))
    recorded = stage.GetPrimAtPath("/Shot").GetCustomData()["stereoforge"]["rig"]
    assert recorded["convergence_distance"] == pytest.approx(5.0), (
        "cloud.usdc's customData 'stereoforge.rig' still holds the old rig "
        f"({dict(recorded)}) after --convergence-distance changed: the 'cloud' stage fingerprint covers only "
        "cloud_stride, yet cloud.usdc records the rig (and the fps), so it goes stale")


def _readable(shot: Path) -> None:
    """Every file in the shot opens (no truncated frame)."""
    for path in shot.rglob("*"):
        if path.suffix == ".png":
            assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED) is not None, path
        elif path.suffix == ".exr":
            assert read_exr_channels(path), path
        elif path.suffix == ".mp4":
            assert open_source(path).count == CLIP_FRAMES, path
        elif path.name == "shot.json":
            json.loads(path.read_text())


class CancelAfter:
    """A ``cancel`` callback that turns true after ``limit`` calls."""

    def __init__(self, limit: int):
        self.limit, self.calls = limit, 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.calls > self.limit


def test_cancelled_job_keeps_complete_files_and_resumes(clip, tmp_path):
    def spec(out: Path) -> ConvertSpec:
        return ConvertSpec(source=str(clip.frames), output_dir=str(out), depth=str(clip.depth_dir),
                           depth_kind="metric", batch=2)

    reference = tmp_path / "reference" / "shot"  # the same folder name, so the same video names
    convert(spec(reference))

    shot = tmp_path / "job" / "shot"
    messages = []
    limit = 2
    while True:
        try:
            convert(spec(shot), cancel=CancelAfter(limit))
            break
        except Cancelled as exc:
            messages.append(str(exc))
        assert temporaries(shot) == [], f"files left half-written after '{messages[-1]}'"
        _readable(shot)
        limit += 1
        assert limit < 300, "the job never finished"
    # The stages run at once where one reads another's files as they come: a message names those it stopped.
    for stage in ("ingest", "cloud", "eyes+inpaint+composite", "encod"):
        assert any(stage in m.partition(";")[0] for m in messages), f"no run was cancelled during {stage}: {messages}"
    # Some run stopped in encode alone: in its loop ("while encoding"), or while it waited for the last composed
    # frame that the other group then wrote without looking at the cancel again ("during encode;").
    assert any(m.startswith(("cancelled while encoding", "cancelled during encode;")) for m in messages), \
        f"none was cancelled alone: {messages}"

    # The resumed shot is the uninterrupted one.
    assert snapshot(shot).keys() == snapshot(reference).keys()
    for path in reference.rglob("*"):
        rel = path.relative_to(reference)
        if path.suffix == ".png":
            assert (shot / rel).read_bytes() == path.read_bytes(), rel
        elif path.suffix == ".exr":
            a, b = read_exr_channels(path), read_exr_channels(shot / rel)
            assert a.keys() == b.keys() and all(np.array_equal(a[c], b[c]) for c in a), rel
    assert open_source(shot / "out" / "video" / "shot_sbs.mp4").count == CLIP_FRAMES


# ----------------------------------------------------------------------------------------- 8. bad input


@pytest.fixture
def bad(inputs, tmp_path):
    p = SimpleNamespace(dir=inputs.dir, out=tmp_path / "out")
    p.image = inputs.image("frame.png", texture(8))
    p.depth = inputs.npy("depth.npy", scene_depth())
    p.wide = inputs.npy("wide.npy", scene_depth(width=W + 2))
    for k in range(CLIP_FRAMES):
        inputs.image(f"frames/f{k + 1}.png", texture(20 + k))
    p.frames = inputs.dir / "frames"
    p.stack3 = inputs.npy("three.npy", np.stack([scene_depth()] * 3))
    holey = np.stack([scene_depth()] * CLIP_FRAMES)
    holey[2] = np.nan
    p.holey = inputs.npy("holey.npy", holey)
    p.garbage = inputs.raw("garbage.mp4", np.random.default_rng(9).bytes(4096))
    p.busy = tmp_path / "busy"
    p.busy.mkdir()
    (p.busy / "notes.txt").write_text("mine")
    return p


BAD_INPUTS = {
    "missing source": lambda p: ([p.dir / "nope.png", "--depth", p.depth], [str(p.dir / "nope.png")]),
    "missing depth": lambda p: ([p.image, "--depth", p.dir / "nope.npy"], [str(p.dir / "nope.npy")]),
    "no depth": lambda p: ([p.image], ["--depth"]),
    "depth size": lambda p: ([p.image, "--depth", p.wide], [str(p.wide), f"{W + 2}x{H}", f"{W}x{H}"]),
    "depth frame count": lambda p: ([p.frames, "--depth", p.stack3], [str(p.stack3), "has 3 frames", "source has 4"]),
    "all-NaN depth frame": lambda p: ([p.frames, "--depth", p.holey], [str(p.holey), "frame 3"]),
    "zero focal": lambda p: ([p.image, "--depth", p.depth, "--focal-px", "0"], ["--focal-px", "0"]),
    "negative interocular": lambda p: ([p.image, "--depth", p.depth, "--interocular", "-0.1"],
                                       ["--interocular", "-0.1"]),
    "hfov 200": lambda p: ([p.image, "--depth", p.depth, "--hfov", "200"], ["hfov", "200"]),
    "garbage video": lambda p: ([p.garbage, "--depth", p.depth], [str(p.garbage)]),
    "output inside source": lambda p: ([p.frames, "--depth", p.stack3, "-o", p.frames / "shot"],
                                       [str(p.frames / "shot")]),
    "output not a shot": lambda p: ([p.image, "--depth", p.depth, "-o", p.busy], [str(p.busy)]),
    "frames 5:2": lambda p: ([p.frames, "--depth", p.stack3, "--frames", "5:2"], ["5:2"]),
    "negative edge radius": lambda p: ([p.image, "--depth", p.depth, "--depth-edge-radius", "-1"],
                                       ["--depth-edge-radius", "-1"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_writes_nothing(bad, inputs, capsys, case):
    args, needles = BAD_INPUTS[case](bad)
    if "-o" not in args:
        args = [*args, "-o", bad.out]
    output = Path(args[args.index("-o") + 1])
    existed = output.exists()
    rc, out, err = cli(capsys, *args)
    assert rc == 2, (rc, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stereoforge: error: "), err
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    if existed:
        assert listing(output) == ["notes.txt"]
    else:
        assert not output.exists(), f"'{output}' was created for bad input"
    inputs.check()


def test_bad_input_exit_status_from_a_real_process(bad):
    result = subprocess.run([sys.executable, "-m", "stereoforge.cli", "convert", str(bad.image), "--depth",
                             str(bad.wide), "-o", str(bad.out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("stereoforge: error: ") and str(bad.wide) in result.stderr
    assert not bad.out.exists()


def test_malformed_frame_range_is_a_one_line_error(bad):
    result = subprocess.run([sys.executable, "-m", "stereoforge.cli", "convert", str(bad.image), "--depth",
                             str(bad.depth), "-o", str(bad.out), "--frames", "two:3"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, (
        "spec.parse_frames (the --frames argparse type) raises InputError, which argparse does not catch "
        f"(only ValueError/TypeError/ArgumentTypeError): exit {result.returncode}, stderr:\n{result.stderr}")
    assert "two:3" in result.stderr.strip().splitlines()[-1]
    assert not bad.out.exists()


# ------------------------------------------------------------------------------------ 9. missing depth


HOLES = {"nan": (4, 4, np.nan), "inf": (4, 20, np.inf), "zero": (50, 10, 0.0), "negative": (50, 70, -1.0),
         "in the rectangle": (30, 44, np.nan)}


@pytest.mark.parametrize("kind", ["metric", "relative"])
def test_missing_depth_becomes_dropout_in_both_eyes(inputs, tmp_path, capsys, kind):
    depth = scene_depth()
    if kind == "relative":
        depth = 1.0 / depth
    missing = np.zeros((H, W), bool)
    for r, c, value in HOLES.values():
        depth[r:r + 4, c:c + 4] = value
        missing[r:r + 4, c:c + 4] = True
    source, depth_path = inputs.image("frame.png", texture(11)), inputs.npy("depth.npy", depth)
    shot = tmp_path / "shot"
    rc, _, err = cli(capsys, source, "--depth", depth_path, "--depth-kind", kind, "--pivot", "CENTER",
                     "--cloud-stride", "1", "-o", shot, "-q", "--keep", "masks")
    assert rc == 0, err
    metric = read_depth_file(shot / "depth" / "000001.exr")
    assert not np.isfinite(metric[missing]).any() and np.isfinite(metric[~missing]).all()
    if kind == "metric":
        np.testing.assert_array_equal(metric[~missing], depth[~missing])
    assert len(cloud_points(shot / "cloud.usdc")) == (~missing).sum()
    for eye in EYES:
        m = mask(shot, eye) > 0
        for name, (r, c, _) in HOLES.items():
            # Each eye moves the hole by up to a pixel sideways; its middle columns stay dropout.
            assert m[r:r + 4, c + 1:c + 3].all(), f"{name} depth is not dropout in the {eye} eye"
    assert (shot / "out" / "video" / "shot_sbs.mp4").is_file()


# ----------------------------------------------------------------------------------------------- 10. help


def _help_entries(text: str) -> dict[str, str]:
    """argparse help -> {option string: its whole entry on one line}."""
    entries: list[str] = []
    open_entry = False
    for line in text.splitlines():
        if re.match(r"^  \S", line):
            entries.append(line.strip())
            open_entry = True
        elif open_entry and line.startswith("   ") and line.strip():
            entries[-1] += "  " + line.strip()
        else:
            open_entry = False
    options = {}
    for entry in entries:
        invocation = entry.split("  ")[0]
        for option in re.findall(r"(?<![\w-])-{1,2}[A-Za-z][\w-]*", invocation):
            options[option] = " ".join(entry.split())
    return options


def test_convert_help_names_every_option_with_its_unit():
    result = subprocess.run([sys.executable, "-m", "stereoforge.cli", "convert", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    entries = _help_entries(result.stdout)
    units = {
        "--near": "metres", "--far": "metres", "--baseline": "metres", "--interocular": "metres",
        "--convergence-distance": "metres", "--focal-px": "pixels", "--hfov": "degrees", "--max-parallax": "%",
        "--depth-smoothing": "seconds", "--fps": "frames per second", "--cloud-stride": "pixel",
        "--batch": "frames", "--depth-edge-radius": "pixels",
    }
    others = ["-o", "--output", "--depth", "--depth-kind", "--depth-scale", "--convergence-mode", "--pivot",
              "--inpaint", "--layout", "--frames", "--codec", "--crf", "--no-cloud", "--device", "--quiet"]
    missing = [o for o in [*units, *others] if o not in entries]
    assert not missing, f"options missing from 'convert --help': {missing}"
    for option, unit in units.items():
        assert unit in entries[option], f"{option}'s help gives no unit ({unit}): {entries[option]!r}"
    for kind in ("metric", "relative", "disparity"):
        assert kind in entries["--depth-kind"]
    for layout in ("sbs", "sbs-half", "tb", "tb-half", "anaglyph", "separate"):
        assert layout in entries["--layout"]
