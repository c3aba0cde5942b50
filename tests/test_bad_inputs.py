"""Bad input, full disks and stopped runs against ``stereoforge convert``: a corpus of cases, one line of data each.

Every case starts from its own copy of one finished shot (made once for the module), breaks one thing and runs
``convert`` on it with a changed interocular, so that a run that cleared the shot before finding the problem
would damage it (or, where the problem is met while writing, a full disk, resumes it with its own settings).
Each case checks: exit status 2; exactly one line on stderr, read from file descriptor 2 so that
a C library's own line (libpng's) counts, that names the problem; no temporary file anywhere; and every file of
the shot (shot.json included) byte for byte as it was, with nothing added. Cases that need a full disk or a
read-only folder mount a small tmpfs (the tests run as root, here and in CI).

Then the runs that are stopped (SIGTERM, Ctrl-C, ``kill -9``) in real processes, the records that cannot be
read, float EXR sources with NaN and infinities, and the reproducibility of a whole run, videos included.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

import stereoforge
from stereoforge.cli import main
from stereoforge.io.images import write_exr, write_png
from stereoforge.io.video import VideoWriter

H, W, FRAMES = 64, 96, 4
FAR_M, NEAR_M = 6.0, 2.0
#: The finished shot's command, less the paths; every case adds a changed interocular to it. The shot keeps
#: every intermediate, so that each stage's files are there to break.
SETTINGS = ("--depth-kind", "metric", "--device", "cpu", "-q", "--keep", "eyes,masks,filled")
REMAKE = ("--interocular", "0.09")
BACKEND = Path(stereoforge.__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------ inputs


def texture(seed: int, height: int = H, width: int = W) -> np.ndarray:
    """A smooth random uint8 RGB picture (PNG does not shrink it much, so each frame is some kB)."""
    coarse = np.random.default_rng(seed).random((height // 4 + 2, width // 4 + 2, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    noise = np.random.default_rng(seed + 100).random((height, width, 3)) * 20
    return np.clip(smooth * 220 + noise + 10, 0, 255).astype(np.uint8)


def depth_stack(count: int, height: int = H, width: int = W) -> np.ndarray:
    depth = np.full((count, height, width), FAR_M, np.float32)
    for i in range(count):
        depth[i, height // 3:2 * height // 3, width // 3 + i:2 * width // 3 + i] = NEAR_M
    return depth


def make_clip(folder: Path, count: int = FRAMES, height: int = H, width: int = W,
              ext: str = "png") -> tuple[Path, Path]:
    """Frames ``folder/frames/0001.<ext>``... and their metric depth ``folder/depth.npy``."""
    frames = folder / "frames"
    frames.mkdir(parents=True)
    for i in range(count):
        assert cv2.imwrite(str(frames / f"{i + 1:04d}.{ext}"), texture(i, height, width)[..., ::-1])
    np.save(folder / "depth.npy", depth_stack(count, height, width))
    return frames, folder / "depth.npy"


def hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def temporaries(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if ".tmp" in p.name)


def without_time(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "created"}


def settings(record: dict) -> dict:
    """A shot record less its creation time and its own place (a shot moved keeps its settings)."""
    spec = {k: v for k, v in record["spec"].items() if k != "output_dir"}
    return {**without_time(record), "spec": spec}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """Inputs and the finished shot made from them: ``<dir>/clip/frames``, ``clip/depth.npy``, ``shot``."""
    root = tmp_path_factory.mktemp("finished")
    frames, depth = make_clip(root / "clip")
    assert main(["convert", str(frames), "--depth", str(depth), "-o", str(root / "shot"), *SETTINGS]) == 0
    return root


# ------------------------------------------------------------------------------------------------ mounts


def mount_tmpfs(folder: Path, size: str, read_only: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], check=True)


def bind_read_only(folder: Path) -> None:
    subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)


def unmount(folder: Path) -> None:
    subprocess.run(["umount", str(folder)], check=True)


def fill(disk: Path, leave: int) -> None:
    """Fill the tmpfs at ``disk`` until ``leave`` bytes are free."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
    os.truncate(filler, max(0, filler.stat().st_size - leave))


# -------------------------------------------------------------------------------------------- the cases


class Ctx:
    """One case's world: the inputs, the shot copy and the output the command is given."""

    def __init__(self, tmp: Path, finished: Path):
        self.tmp, self.finished = tmp, finished
        self.shot = tmp / "shot"
        shutil.copytree(finished / "shot", self.shot)
        self.source: Path | None = finished / "clip" / "frames"
        self.depth: Path | None = finished / "clip" / "depth.npy"
        self.output = self.shot
        self.cleanups: list[Callable[[], None]] = []

    def own_source(self, ext: str = "png") -> Path:
        """A copy of the clip's frames (as ``ext``) that the case may break."""
        folder = self.tmp / "src"
        folder.mkdir()
        for i in range(FRAMES):
            assert cv2.imwrite(str(folder / f"{i + 1:04d}.{ext}"), texture(i)[..., ::-1])
        self.source = folder
        return folder

    def folder(self, name: str) -> Path:
        (self.tmp / name).mkdir()
        return self.tmp / name

    def own_depth(self) -> Path:
        self.depth = self.folder("depth")
        return self.depth

    def new_output(self) -> None:
        self.output = self.tmp / "new" / "shot"


@dataclass
class Case:
    name: str
    #: A regular expression the one error line must match.
    needle: str
    args: tuple[str, ...] = ()
    setup: Callable[[Ctx], None] | None = None
    #: The run resumes the shot with its own settings (instead of changing the interocular): it gets as far as
    #: rewriting shot.json (the same but for its creation time) before it fails.
    resumes: bool = False


def frame(ctx: Ctx, n: int, ext: str = "png") -> Path:
    return ctx.source / f"{n:04d}.{ext}"


def cut(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def damage_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def with_exif_orientation(path: Path, value: int) -> None:
    """Insert an EXIF block whose orientation tag is ``value`` right after the JPEG's start marker."""
    entry = struct.pack("<HHIHH", 0x0112, 3, 1, value, 0)
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + entry + struct.pack("<I", 0)
    body = b"Exif\x00\x00" + tiff
    data = path.read_bytes()
    path.write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + data[2:])


def tmp_file(ctx: Ctx, name: str, data: bytes) -> Path:
    (ctx.tmp / name).write_bytes(data)
    return ctx.tmp / name


def source_file(ctx: Ctx, name: str, data: bytes) -> None:
    ctx.source = tmp_file(ctx, name, data)


def exr_source(ctx: Ctx, channels: dict[str, np.ndarray], keep: float | None = None) -> None:
    """A one-image EXR source, with its one frame of depth."""
    ctx.source = ctx.tmp / "frame.exr"
    write_exr(ctx.source, channels)
    if keep is not None:
        cut(ctx.source, keep)
    npy_depth(ctx, depth_stack(1)[0])


def hidden_only(ctx: Ctx) -> None:
    ctx.source = ctx.folder("hidden")
    (ctx.source / ".0001.png").write_bytes(b"x")


def other_files(ctx: Ctx) -> None:
    ctx.output = ctx.folder("other")
    (ctx.output / "notes.txt").write_text("x")


def source_case(change: Callable[[Ctx], None], ext: str = "png") -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        ctx.own_source(ext)
        change(ctx)
    return setup


def video_source(ctx: Ctx, keep: float | None) -> None:
    path = ctx.tmp / "clip.mp4"
    with VideoWriter(path, W, H, 24) as video:
        for i in range(FRAMES):
            video.write(texture(i))
    if keep is not None:
        cut(path, keep)
    ctx.source = path


def turned_video(ctx: Ctx) -> None:
    """The clip as a video whose track header's matrix tells players to turn it 90 degrees (as phones do)."""
    video_source(ctx, None)
    data = bytearray(ctx.source.read_bytes())
    box = data.find(b"tkhd")
    matrix = box + 4 + 4 + (20 if data[box + 4] == 0 else 32) + 16  # version, flags, times, ids; reserved
    data[matrix:matrix + 36] = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    ctx.source.write_bytes(bytes(data))


def depth_files(ctx: Ctx, write: Callable[[Path, int], None], count: int = FRAMES) -> None:
    folder = ctx.own_depth()
    for i in range(count):
        write(folder, i)


def exr_depth(values: Callable[[int], np.ndarray], channels: tuple[str, ...] = ("Z",)):
    return lambda folder, i: write_exr(folder / f"{i + 1:04d}.exr", {c: values(i) for c in channels})


def npy_depth(ctx: Ctx, array) -> None:
    ctx.depth = ctx.tmp / "depth.npy"
    np.save(ctx.depth, array, allow_pickle=True)


def nan_frame(i: int) -> np.ndarray:
    return np.full((H, W), np.nan if i == 1 else FAR_M, np.float32)


def file_where_folder(rel: str) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        target = ctx.shot / rel
        shutil.rmtree(target)
        target.write_text("not a folder")
    return setup


def read_only_output(ctx: Ctx) -> None:
    disk = ctx.tmp / "ro"
    mount_tmpfs(disk, "1m", read_only=True)
    ctx.cleanups.append(lambda: unmount(disk))
    ctx.output = disk / "shot"


def read_only_filled(ctx: Ctx) -> None:
    for eye in ("left", "right"):
        for n in (3, 4):
            (ctx.shot / "filled" / eye / f"{n:06d}.png").unlink()
    folder = ctx.shot / "filled" / "left"
    bind_read_only(folder)
    ctx.cleanups.append(lambda: unmount(folder))


#: Outputs of each stage, the shot copy's files removed so that the stage has frames to write.
STAGE_FILES = {"ingest": ("source", "depth", "cloud", "cloud.usdc", "eyes", "masks", "filled", "out"),
               "cloud": ("cloud", "cloud.usdc"), "eyes": ("eyes", "masks", "filled", "out"),
               "inpaint": ("filled", "out"), "composite": ("out",), "encode": ("out/video",)}


def full_disk_in(stage: str) -> Callable[[Ctx], None]:
    """The shot on a tmpfs with 8 kB free, the files of ``stage`` (and after it) gone: the stage's first
    frame (over 8 kB each) does not fit, shot.json (rewritten first, 3 kB) does."""
    def setup(ctx: Ctx) -> None:
        disk = ctx.tmp / "disk"
        mount_tmpfs(disk, "6m")
        ctx.cleanups.append(lambda: unmount(disk))
        for rel in STAGE_FILES[stage]:
            target = ctx.shot / rel
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        shutil.copytree(ctx.shot, disk / "shot")
        shutil.rmtree(ctx.shot)
        ctx.shot = ctx.output = disk / "shot"
        fill(disk, leave=8192)
    return setup


CASES = [
    # -- the source
    Case("source missing", r"source '.*nowhere' does not exist",
         setup=lambda ctx: setattr(ctx, "source", ctx.tmp / "nowhere")),
    Case("source folder empty", r"has no frames", setup=lambda ctx: setattr(ctx, "source", ctx.folder("empty"))),
    Case("source folder of hidden files only", r"has no frames", setup=hidden_only),
    Case("a png frame cut short", r"0003\.png'.*cut short", setup=source_case(lambda ctx: cut(frame(ctx, 3)))),
    Case("a png frame cut short, new folder", r"0003\.png'.*cut short",
         setup=source_case(lambda ctx: (cut(frame(ctx, 3)), ctx.new_output()))),
    Case("the last png frame cut short", r"0004\.png'.*cut short",
         setup=source_case(lambda ctx: cut(frame(ctx, 4), 0.9))),
    Case("a png frame with a damaged chunk", r"0002\.png'.*CRC mismatch",
         setup=source_case(lambda ctx: damage_middle(frame(ctx, 2)))),
    Case("a png frame of zero bytes", r"0002\.png'.*not a valid PNG",
         setup=source_case(lambda ctx: frame(ctx, 2).write_bytes(b""))),
    Case("a png frame of garbage", r"0002\.png'.*not a valid PNG",
         setup=source_case(lambda ctx: frame(ctx, 2).write_bytes(os.urandom(3000)))),
    Case("a jpeg frame cut short", r"0003\.jpg'.*end-of-image",
         setup=source_case(lambda ctx: cut(frame(ctx, 3, "jpg"), 0.7), "jpg")),
    Case("a jpeg frame turned by EXIF (6)", r"0002\.jpg'.*EXIF orientation 6",
         setup=source_case(lambda ctx: with_exif_orientation(frame(ctx, 2, "jpg"), 6), "jpg")),
    Case("a jpeg frame turned by EXIF (3)", r"0001\.jpg'.*EXIF orientation 3",
         setup=source_case(lambda ctx: with_exif_orientation(frame(ctx, 1, "jpg"), 3), "jpg")),
    Case("a jpeg frame mirrored by EXIF (2)", r"0004\.jpg'.*EXIF orientation 2",
         setup=source_case(lambda ctx: with_exif_orientation(frame(ctx, 4, "jpg"), 2), "jpg")),
    Case("frames of two sizes", r"0003\.png' is 80x64 but",
         setup=source_case(lambda ctx: cv2.imwrite(str(frame(ctx, 3)), texture(3, H, 80)))),
    Case("a source of an unknown type", r"unsupported type '\.txt'",
         setup=lambda ctx: source_file(ctx, "clip.txt", b"frames")),
    Case("a video cut short", r"video '.*clip\.mp4'", setup=lambda ctx: video_source(ctx, 0.5)),
    Case("a video turned by its display matrix",
         r"video '.*clip\.mp4' is tagged to be shown turned 90 degrees clockwise",
         setup=turned_video),
    Case("a video of garbage", r"cannot decode video",
         setup=lambda ctx: source_file(ctx, "clip.mp4", os.urandom(5000))),
    Case("an exr source without colour channels", r"no R, G, B",
         setup=lambda ctx: exr_source(ctx, {"foo": np.ones((H, W)), "bar": np.ones((H, W))})),
    Case("an exr source cut short", r"cannot read .*frame\.exr",
         setup=lambda ctx: exr_source(ctx, {c: np.random.rand(H, W) for c in "RGB"}, keep=0.6)),
    # -- the depth
    Case("no depth", r"no depth was given", setup=lambda ctx: setattr(ctx, "depth", None)),
    Case("depth missing", r"depth '.*nowhere\.npy' does not exist",
         setup=lambda ctx: setattr(ctx, "depth", ctx.tmp / "nowhere.npy")),
    Case("depth with a frame too few", r"3 frames?.*4", setup=lambda ctx: npy_depth(ctx, depth_stack(3))),
    Case("depth of another size", r"depth.*is 64x96 but the source is 96x64|64x96",
         setup=lambda ctx: npy_depth(ctx, depth_stack(FRAMES, W, H))),
    Case("depth of pickled objects", r"cannot read depth", setup=lambda ctx: npy_depth(ctx, np.array([{}, {}]))),
    Case("depth of four axes", r"has shape \(4, 64, 96, 2\)",
         setup=lambda ctx: npy_depth(ctx, np.ones((FRAMES, H, W, 2), np.float32))),
    Case("depth with a frame of NaN", r"no valid depth",
         setup=lambda ctx: npy_depth(ctx, np.stack([nan_frame(i) for i in range(FRAMES)]))),
    Case("depth all negative", r"no valid depth", setup=lambda ctx: npy_depth(ctx, -depth_stack(FRAMES))),
    Case("a depth exr cut short", r"cannot read depth .*0002\.exr",
         setup=lambda ctx: (depth_files(ctx, exr_depth(lambda i: depth_stack(FRAMES)[i])),
                            cut(ctx.depth / "0002.exr", 0.5))),
    Case("a depth exr with two depth channels", r"several depth channels",
         setup=lambda ctx: depth_files(ctx, exr_depth(lambda i: depth_stack(FRAMES)[i], ("a.Z", "b.Z")))),
    Case("a depth folder a file short", r"depth",
         setup=lambda ctx: depth_files(ctx, exr_depth(lambda i: depth_stack(FRAMES)[i]), count=3)),
    Case("an 8-bit depth png", r"8-bit",
         setup=lambda ctx: depth_files(ctx, lambda folder, i: write_png(folder / f"{i + 1:04d}.png",
                                                                      np.full((H, W), 9, np.uint8)))),
    Case("depth of an unknown type", r"depth '.*depth\.txt'",
         setup=lambda ctx: setattr(ctx, "depth", tmp_file(ctx, "depth.txt", b"6"))),
    Case("an npz depth holding nothing", r"holds no arrays",
         setup=lambda ctx: (np.savez(ctx.tmp / "depth.npz"), setattr(ctx, "depth", ctx.tmp / "depth.npz"))),
    # -- the options
    Case("--frames past the end", r"--frames 20:30 does not fit .* 4 frames; choose A:B with 1 <= A <= B <= 4",
         args=("--frames", "20:30")),
    Case("--frames open past the end", r"--frames 5: does not fit", args=("--frames", "5:")),
    Case("--frames from 0", r"--frames 0:3 is not valid; frames are numbered from 1", args=("--frames", "0:3")),
    Case("--frames backwards", r"--frames 3:2 is not valid", args=("--frames", "3:2")),
    Case("--frames not numbers", r"--frames 'a:b' is not valid", args=("--frames", "a:b")),
    Case("--device cuda without a GPU", r"--device cuda: .* sees no CUDA GPU", args=("--device", "cuda")),
    Case("--device unknown", r"--device 'tpu9' is not a torch device", args=("--device", "tpu9")),
    Case("--stages eyes into a new folder", r"is missing, so the 'eyes' stage cannot run",
         args=("--stages", "eyes"), setup=Ctx.new_output),
    Case("--stages inpaint without eyes", r"is missing, so the 'inpaint' stage cannot run",
         args=("--stages", "inpaint,composite,encode"),
         setup=lambda ctx: (shutil.rmtree(ctx.shot / "eyes"), shutil.rmtree(ctx.shot / "masks"))),
    Case("--stages encode without frames", r"is missing, so the 'encode' stage cannot run",
         args=("--stages", "encode"), setup=lambda ctx: shutil.rmtree(ctx.shot / "out")),
    Case("--stages unknown", r"--stages 'splat' is not one of ingest, cloud", args=("--stages", "splat")),
    Case("--focal-px 0", r"--focal-px 0\.0 is not valid", args=("--focal-px", "0")),
    Case("--focal-px nan", r"--focal-px nan is not valid", args=("--focal-px", "nan")),
    Case("--focal-px and --hfov", r"either --focal-px or --hfov", args=("--focal-px", "80", "--hfov", "50")),
    Case("--max-parallax and --interocular", r"--interocular and --max-parallax each set the interocular",
         args=("--max-parallax", "2")),
    Case("--interocular negative", r"--interocular -1\.0 is not valid", args=("--interocular", "-1")),
    Case("--fps 0", r"--fps 0\.0 is not valid", args=("--fps", "0")),
    Case("--crf 60", r"--crf 60 is not valid", args=("--crf", "60")),
    Case("--cloud-stride 0", r"--cloud-stride 0 is not valid", args=("--cloud-stride", "0")),
    Case("--batch 0", r"--batch 0 is not valid", args=("--batch", "0")),
    Case("--layout unknown", r"--layout 'cube' is not one of", args=("--layout", "cube")),
    Case("--codec unknown", r"argument --codec: invalid choice: 'vp9'", args=("--codec", "vp9")),
    Case("--depth-kind unknown", r"argument --depth-kind: invalid choice", args=("--depth-kind", "inverse")),
    Case("--depth and --depth-model", r"either --depth .* or --depth-model", args=("--depth-model", "some/model")),
    Case("--depth-edge-radius negative", r"--depth-edge-radius -1 is not valid", args=("--depth-edge-radius", "-1")),
    Case("--depth-smoothing negative", r"--depth-smoothing -1\.0 s is not valid", args=("--depth-smoothing", "-1")),
    Case("--near beyond --far", r"--near 5\.0 m and --far 2\.0 m are not valid",
         args=("--depth-kind", "relative", "--near", "5", "--far", "2")),
    Case("--depth-scale 0", r"--depth-scale 0\.0 is not valid", args=("--depth-scale", "0")),
    # -- the output
    Case("output is a file", r"output '.*' is a file; give a folder",
         setup=lambda ctx: setattr(ctx, "output", tmp_file(ctx, "file", b"x"))),
    Case("output under a file", r"'.*file' is a file where a folder belongs",
         setup=lambda ctx: setattr(ctx, "output", tmp_file(ctx, "file", b"x") / "shot")),
    Case("output folder of other files", r"holds no shot\.json", setup=other_files),
    Case("output inside the source folder", r"lies inside the source folder",
         setup=lambda ctx: setattr(ctx, "output", ctx.own_source() / "shot")),
    Case("source inside the output folder", r"source '.*' lies inside the output folder",
         setup=lambda ctx: setattr(ctx, "source", ctx.shot / "source")),
    Case("output on a read-only disk", r"cannot write into '.*ro'", setup=read_only_output),
    Case("shot.json is a folder", r"shot\.json' is not a file",
         setup=lambda ctx: ((ctx.shot / "shot.json").unlink(), (ctx.shot / "shot.json").mkdir())),
    Case("eyes/ is a file", r"'.*/eyes' is a file where a folder belongs", setup=file_where_folder("eyes")),
    Case("masks/left is a file", r"'.*/masks/left' is a file", setup=file_where_folder("masks/left")),
    Case("cloud/ is a file", r"'.*/cloud' is a file", setup=file_where_folder("cloud")),
    Case("out/video is a file", r"'.*/out/video' is a file", setup=file_where_folder("out/video")),
    Case("resuming into a read-only filled/left", r"cannot write into '.*filled/left'", setup=read_only_filled),
    # -- a full disk in each stage (the same settings: the stage resumes and finds no room)
    *[Case(f"a full disk in {stage}", r"cannot write '.*': .*No space left on device", setup=full_disk_in(stage),
           resumes=True) for stage in STAGE_FILES],
]


def run_cli(args: list[str]) -> int:
    """``stereoforge ARGS`` in this process: its exit status (usage errors exit through argparse)."""
    try:
        return main(args)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_refused_in_one_line_and_the_shot_is_untouched(case: Case, finished, tmp_path, capfd):
    ctx = Ctx(tmp_path, finished)
    try:
        if case.setup:
            case.setup(ctx)
        before = hashes(ctx.shot)
        record = ctx.shot / "shot.json"
        recorded = json.loads(record.read_text()) if record.is_file() else None
        existed = ctx.output.exists()
        args = ["convert", str(ctx.source), "-o", str(ctx.output), *SETTINGS, *(() if case.resumes else REMAKE)]
        if ctx.depth is not None:
            args += ["--depth", str(ctx.depth)]
        capfd.readouterr()
        status = run_cli([*args, *case.args])
        out, err = capfd.readouterr()
        lines = err.splitlines()
        assert status == 2, (status, err)
        assert len(lines) == 1, lines
        assert re.search(case.needle, lines[0]), lines[0]
        assert temporaries(tmp_path) == []
        after = hashes(ctx.shot)
        if case.resumes:
            assert settings(json.loads(record.read_text())) == settings(recorded)
            before.pop("shot.json"), after.pop("shot.json")
        assert after == before
        if not existed:
            assert not ctx.output.exists()
    finally:
        for cleanup in reversed(ctx.cleanups):
            cleanup()


def test_the_corpus_has_sixty_cases_or_more():
    assert len(CASES) >= 60 and len({case.name for case in CASES}) == len(CASES)


# ------------------------------------------------------------------------------------- stopped runs


LONG = {"count": 24, "height": 128, "width": 192}
#: The encoder holds its first 40-odd frames back (its lookahead) and writes nothing before: a clip longer than
#: that, of small frames, has its video half-written on disk for a while.
MANY = {"count": 64, "height": 64, "width": 96}
#: The long clips' runs: telea fills the dropout faster than the default, enough for these tests.
LONG_SETTINGS = (*SETTINGS, "--batch", "1", "--inpaint", "telea")


def clip_and_reference(root: Path, size: dict) -> Path:
    """A clip (``clip/``) and its uninterrupted shot (``ref/shot``) under ``root``."""
    frames, depth = make_clip(root / "clip", **size)
    assert main(["convert", str(frames), "--depth", str(depth), "-o", str(root / "ref" / "shot"),
                 *LONG_SETTINGS]) == 0
    return root


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """A clip long enough to be stopped in any stage."""
    return clip_and_reference(tmp_path_factory.mktemp("long"), LONG)


@pytest.fixture(scope="module")
def many_frames(tmp_path_factory) -> Path:
    """A clip whose encode stage has its video half-written on disk for a while."""
    return clip_and_reference(tmp_path_factory.mktemp("many"), MANY)


def long_args(root: Path, output: Path, source: Path | None = None) -> list[str]:
    return ["convert", str(source or root / "clip" / "frames"), "--depth", str(root / "clip" / "depth.npy"),
            "-o", str(output), *LONG_SETTINGS]


def run_and_signal(args: list[str], stage: str, act: Callable[[subprocess.Popen], None]) -> tuple[int, str]:
    """``stereoforge ARGS`` in its own process, following its JSON progress; ``act(process)`` once ``stage`` has
    finished its first frame (and has more to do). Returns the exit status and stderr."""
    env = {**os.environ, "PYTHONPATH": str(BACKEND)}
    process = subprocess.Popen([sys.executable, "-m", "stereoforge.cli", *args, "--progress", "json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    acted = False
    for line in process.stdout:
        event = json.loads(line)
        # Eyes, inpaint and composite run as one (eyes+inpaint+composite): a stop in any is a stop in it.
        parts = event.get("stage", "").split("+")
        if not acted and any(part.startswith(stage) for part in parts) and 1 <= event["done"] < event["total"]:
            act(process)
            acted = True
    _, err = process.communicate(timeout=300)
    assert acted, f"the run never reached '{stage}': {err}"
    return process.returncode, err


def assert_same_shot(shot: Path, reference: Path) -> None:
    """Every file byte for byte the reference's; shot.json's settings too."""
    ours, theirs = hashes(shot), hashes(reference)
    assert settings(json.loads((shot / "shot.json").read_text())) == settings(
        json.loads((reference / "shot.json").read_text()))
    ours.pop("shot.json"), theirs.pop("shot.json")
    assert ours == theirs


@pytest.mark.parametrize("stage,signum,status,said", [
    ("eyes", signal.SIGTERM, 128 + signal.SIGTERM, "stopped by SIGTERM"),
    ("inpaint", signal.SIGINT, 130, "interrupted"),
    ("encode", signal.SIGTERM, 128 + signal.SIGTERM, "stopped by SIGTERM"),
])
def test_a_stopped_run_says_so_in_one_line_leaves_no_temporary_and_resumes(long_clip, tmp_path, capfd, stage,
                                                                            signum, status, said):
    shot = tmp_path / "shot"
    code, err = run_and_signal(long_args(long_clip, shot), stage, lambda process: process.send_signal(signum))
    assert code == status and len(err.splitlines()) == 1 and said in err, (code, err)
    assert temporaries(shot) == []
    assert main(long_args(long_clip, shot)) == 0
    assert_same_shot(shot, long_clip / "ref" / "shot")


@pytest.mark.parametrize("stage", ["ingest", "cloud", "eyes", "encode"])
def test_a_killed_runs_temporary_file_is_removed_by_the_next_run(long_clip, many_frames, tmp_path, capfd, stage):
    shot = tmp_path / "shot"
    clip = many_frames if stage == "encode" else long_clip

    def kill(process: subprocess.Popen) -> None:
        # For the encode stage, from the composite stage's first frame on (the progress lines may be read late
        # on a busy machine: the encode could be over by the time its own first line is read), the run goes on
        # in steps of a millisecond, stopped in between, until its video is there half-written. The other
        # stages' files are written in a moment each, and may or may not be caught.
        while stage == "encode":
            process.send_signal(signal.SIGSTOP)
            if temporaries(shot / "out" / "video"):
                break
            assert process.poll() is None, "the encode stage ended before its video was caught half-written"
            process.send_signal(signal.SIGCONT)
            time.sleep(0.001)
        process.kill()
        process.wait()

    code, _ = run_and_signal(long_args(clip, shot), "composite" if stage == "encode" else stage, kill)
    assert code == -signal.SIGKILL
    left = temporaries(shot)
    if stage == "encode":  # the encoder follows the composite frames: theirs may be caught half-written too
        assert "video" in [Path(p).parent.name for p in left]
    capfd.readouterr()
    assert main(long_args(clip, shot)) == 0
    err = capfd.readouterr().err
    assert all(f"removed '{p}'" in err for p in left)
    assert temporaries(shot) == []
    assert_same_shot(shot, clip / "ref" / "shot")


def test_a_source_symlink_swapped_while_the_job_runs_changes_nothing(long_clip, tmp_path):
    """The job reads its source where the path resolved when it was checked."""
    other, _ = make_clip(tmp_path / "other", **LONG)
    for file in other.iterdir():  # the same size and count, other pictures
        cv2.imwrite(str(file), 255 - cv2.imread(str(file)))
    link = tmp_path / "link"
    link.symlink_to(long_clip / "clip" / "frames", target_is_directory=True)

    def swap(process: subprocess.Popen) -> None:
        link.unlink()
        link.symlink_to(other, target_is_directory=True)

    shot = tmp_path / "shot"
    code, err = run_and_signal(long_args(long_clip, shot, source=link), "source check", swap)
    assert code == 0, err
    ours, theirs = hashes(shot), hashes(long_clip / "ref" / "shot")
    ours.pop("shot.json"), theirs.pop("shot.json")
    assert ours == theirs


# ---------------------------------------------------------------------------------- records, floats, bytes


@pytest.fixture(scope="module")
def remade(finished, tmp_path_factory) -> Path:
    """The finished shot's clip made afresh with the changed interocular."""
    shot = tmp_path_factory.mktemp("remade") / "shot"
    clip = finished / "clip"
    assert main(["convert", str(clip / "frames"), "--depth", str(clip / "depth.npy"), "-o", str(shot), *SETTINGS,
                 *REMAKE]) == 0
    return shot


@pytest.mark.parametrize("record", [None, "[]", '{"stages": ["ingest"]}', '{"stages": {"eyes": 3}}'],
                         ids=["cut short", "a list", "stages a list", "a fingerprint a number"])
def test_an_unreadable_record_remakes_every_stage_run(finished, remade, tmp_path, capfd, record):
    """A shot.json that cannot be read never means "nothing changed": the run remakes what it runs."""
    shot = tmp_path / "shot"
    shutil.copytree(finished / "shot", shot)
    if record is None:
        cut(shot / "shot.json", 0.6)
    else:
        (shot / "shot.json").write_text(record)
    clip = finished / "clip"
    capfd.readouterr()
    assert main(["convert", str(clip / "frames"), "--depth", str(clip / "depth.npy"), "-o", str(shot), *SETTINGS,
                 *REMAKE]) == 0
    assert "cannot be read" in capfd.readouterr().err
    ours, theirs = hashes(shot), hashes(remade)
    ours.pop("shot.json"), theirs.pop("shot.json")
    assert ours == theirs
    assert json.loads((shot / "shot.json").read_text())["rig"]["interocular_distance"] == 0.09


def test_float_exr_sources_with_nan_and_infinities_convert_without_a_warning(tmp_path, capfd):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(2):
        rgb = texture(i).astype(np.float32) / 255
        rgb[0, 0], rgb[0, 1], rgb[0, 2] = np.nan, np.inf, -np.inf
        rgb[1, 0], rgb[1, 1] = 1e30, -1e30
        write_exr(frames / f"{i + 1:04d}.exr", {c: rgb[..., j] for j, c in enumerate("RGB")})
    np.save(tmp_path / "depth.npy", depth_stack(2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status = main(["convert", str(frames), "--depth", str(tmp_path / "depth.npy"), "-o", str(tmp_path / "shot"),
                       *SETTINGS])
    assert status == 0 and capfd.readouterr().err == ""
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []
    from stereoforge.io.images import read_image

    assert np.isfinite(read_image(tmp_path / "shot" / "source" / "000001.exr")).all()


def test_two_runs_of_the_same_convert_give_the_same_bytes(finished, tmp_path):
    """Everything but shot.json's creation time, the videos included."""
    clip = finished / "clip"
    args = ["convert", str(clip / "frames"), "--depth", str(clip / "depth.npy"), "-o", str(tmp_path / "a" / "shot"),
            *SETTINGS, "--layout", "sbs,anaglyph,separate"]
    assert main(args) == 0
    (tmp_path / "a").rename(tmp_path / "b")
    assert main(args) == 0
    first, second = hashes(tmp_path / "b" / "shot"), hashes(tmp_path / "a" / "shot")
    records = [json.loads((tmp_path / run / "shot" / "shot.json").read_text()) for run in "ab"]
    assert without_time(records[0]) == without_time(records[1])
    first.pop("shot.json"), second.pop("shot.json")
    assert first == second and sum(name.endswith(".mp4") for name in first) == 4


@pytest.mark.parametrize("name,codec", [("v.mp4", "h264"), ("v.mkv", "h265")])
def test_a_video_has_the_same_bytes_however_many_cores_the_encoder_may_use(tmp_path, name, codec):
    """x264 left to itself cuts frames into one slice per thread, and takes as many threads as the cores it
    may run on: one core and two gave different bytes; Matroska wrote the time and a random id."""
    frames = [np.roll(texture(0, 128, 384), 5 * i, axis=1) for i in range(12)]
    cores = os.sched_getaffinity(0)
    digests = []
    try:
        for allowed in ({min(cores)}, cores, {min(cores)}):
            os.sched_setaffinity(0, allowed)
            with VideoWriter(tmp_path / name, 384, 128, 24, codec=codec, stereo="sbs") as video:
                for rgb in frames:
                    video.write(rgb)
            digests.append(hashlib.sha256((tmp_path / name).read_bytes()).hexdigest())
    finally:
        os.sched_setaffinity(0, cores)
    assert len(cores) > 1 and len(set(digests)) == 1
