"""``stereoforge bench``: how fast the splatter and the whole pipeline run, on synthetic clips.

    stereoforge bench splat [--height H --width W --frames N --device cpu|cuda --json]
    stereoforge bench pipeline [--height H --width W --frames N --device ... --inpaint NAME --json]
    stereoforge bench chunk [--height H --width W --frames N --last N --repeat N --json]

``bench splat`` times :func:`stereoforge.splat.splat_eye` alone: both eyes of warm synthetic RGB-D frames, with
their dropout masks, already in memory on the device (no file I/O), in batches as ``convert`` splats them, each
eye written into the tensors of the batch before. In
the same run it times :func:`numpy_reference_splat`, a plain vectorised numpy z-buffer splat, as a yardstick,
and prints both and their ratio.

``bench pipeline`` writes a synthetic clip (a textured video and a ``.npy`` stack of relative depth with moving
objects), runs ``convert`` on it and prints each stage's seconds per frame and the peak memory: resident set
size (the process's peak, and the peak sampled while ``convert`` ran) and, on a GPU, torch's peak allocation.

``bench chunk`` writes the same clip and times what ``ingest`` reads for a farm chunk of the clip's last frames:
the source and depth frames from the chunk's first frame on (a video seeks to a keyframe before it), against
reading them from the clip's first frame, as ingest did before it could start at a frame.

Timings are the best of ``--repeat`` runs: on a shared machine the best is the least disturbed one. Speed
targets live here, in the figures this prints, never in tests.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from ..inpaint import DEFAULT_INPAINTER, INPAINTERS
from ..rig import CONVERGENCE_MODES, DEFAULT_INTEROCULAR, EyeView, StereoRig, eye_views, harmonic_middle

if TYPE_CHECKING:  # torch loads when a benchmark runs, not when the command line starts
    import torch

    from ..camera import Intrinsics

#: Synthetic scenes span this depth range (metres).
NEAR, FAR = 1.2, 10.0
#: Distinct synthetic frames kept in memory by ``bench splat``; longer runs cycle through them.
_POOL = 16


# -- the yardstick --------------------------------------------------------------------------------------------


def numpy_reference_splat(color: np.ndarray, depth: np.ndarray, k: Intrinsics,
                          view: EyeView) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One eye by the plain vectorised numpy z-buffer splat: the speed yardstick of ``bench splat``.

    Each point goes to the nearest pixel of its target (no bilinear weights); points are sorted by disparity
    so the nearer ones are written last, and the last write wins (numpy fancy assignment). Only for eyes that
    keep rows (PARALLEL, OFFAXIS): ``x = j + f e / Z - shift``, the disparity of :mod:`stereoforge.splat`.

    Args:
        color: (B, 3, H, W) float32 linear RGB.
        depth: (B, H, W) float32 planar depth in metres; non-finite or non-positive = no point.
        k: intrinsics of the source view.
        view: the eye (it must only move along its x axis).

    Returns:
        ``(rgb (B, 3, H, W), depth (B, H, W), dropout (B, H, W) bool)``: the colour of the nearest point at each
        pixel (0 where none), its depth (inf where none), and where no point landed.
    """
    m = view.source_to_eye
    if not (np.allclose(m[:3, :3], np.eye(3)) and m[1, 3] == 0 and m[2, 3] == 0):
        raise InputError(f"the numpy reference splat keeps rows, so it needs a PARALLEL or OFFAXIS eye, not "
                         f"'{view.name}' of this rig")
    b, _, h, w = color.shape
    focal_shift = np.float32(k.fx * float(m[0, 3]))
    columns = np.arange(w, dtype=np.float32)
    row_starts = (np.arange(h) * w)[:, None]
    rgb = np.zeros((b, 3, h * w), np.float32)
    eye_depth = np.full((b, h * w), np.inf, np.float32)
    hit = np.zeros((b, h * w), bool)
    for i in range(b):
        d = depth[i]
        valid = np.isfinite(d) & (d > 0)
        disparity = focal_shift / np.where(valid, d, np.float32(1))
        x = np.rint(columns + disparity - np.float32(view.shift_px)).astype(np.int64)
        source = np.flatnonzero(valid & (x >= 0) & (x < w))
        # Farther points first: |disparity| grows as the point comes nearer.
        source = source[np.argsort(np.abs(disparity.ravel()[source]))]
        target = (row_starts + x).ravel()[source]
        for c in range(3):
            rgb[i, c][target] = color[i, c].ravel()[source]
        eye_depth[i][target] = d.ravel()[source]
        hit[i][target] = True
    return rgb.reshape(b, 3, h, w), eye_depth.reshape(b, h, w), ~hit.reshape(b, h, w)


# -- synthetic clips ------------------------------------------------------------------------------------------


def synthetic_frames(count: int, height: int, width: int, seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """A synthetic clip, one frame at a time: ``(rgb (H, W, 3) float32 linear, depth (H, W) float32 metres)``.

    A wall and floor that come nearer towards the bottom of the frame, with a gentle relief, and three objects
    (a disc, a box, a bar) at 1.2 to 3 m that move across it; every surface is textured so that splatting has
    detail to move. Frame ``n`` depends only on ``n`` and ``seed``.
    """
    v = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    u = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    aspect = width / height
    inverse = 1.0 / FAR + (1.0 / 2.5 - 1.0 / FAR) * v ** 2 + 0.01 * np.sin(9.0 * u + 3.0 * v)
    background = (1.0 / inverse).astype(np.float32)
    rng = np.random.default_rng(seed)
    grain = rng.random((height, width), dtype=np.float32)
    stripes = 0.5 + 0.5 * np.sin(40.0 * u * aspect + 25.0 * v)
    base = np.stack((0.15 + 0.35 * v + 0.1 * stripes, 0.2 + 0.3 * stripes, 0.35 - 0.2 * v + 0.1 * grain), -1)
    objects = [  # (shape, centre u at t=0, speed per frame, centre v, size, depth m, colour)
        ("disc", 0.25, 0.004, 0.45, 0.18, NEAR, (0.8, 0.25, 0.1)),
        ("box", 0.7, -0.003, 0.6, 0.22, 2.0, (0.1, 0.5, 0.8)),
        ("bar", 0.1, 0.006, 0.3, 0.06, 3.0, (0.9, 0.85, 0.2)),
    ]
    for n in range(count):
        depth = background.copy()
        rgb = base.copy()
        for shape, u0, speed, vc, size, z, tint in objects:
            uc = (u0 + speed * n) % 1.2 - 0.1
            du, dv = (u - uc) * aspect, v - vc
            if shape == "disc":
                inside = du ** 2 + dv ** 2 < size ** 2
                surface = z + 0.3 * (du ** 2 + dv ** 2) / size  # a dome, nearest at its centre
            elif shape == "box":
                inside = (np.abs(du) < size) & (np.abs(dv) < size * 0.8)
                surface = z + 0.5 * du  # a slanted face
            else:
                inside = (np.abs(du) < size) & (dv > -0.25) & (dv < 0.6)
                surface = np.full_like(du, z)
            surface = np.broadcast_to(surface, inside.shape)
            depth = np.where(inside, surface, depth)
            check = ((np.floor(du * 30) + np.floor(dv * 30)) % 2)[..., None]
            rgb = np.where(inside[..., None], np.asarray(tint, np.float32) * (0.6 + 0.4 * check), rgb)
        yield rgb.astype(np.float32), depth.astype(np.float32)


def _clip_tensors(count: int, height: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    frames = list(synthetic_frames(count, height, width))
    color = torch.from_numpy(np.stack([f[0] for f in frames])).permute(0, 3, 1, 2).contiguous().to(device)
    depth = torch.from_numpy(np.stack([f[1] for f in frames])).to(device)
    return color, depth


def _rig(mode: str) -> StereoRig:
    """convert's default rig for a clip that spans NEAR..FAR: 65 mm, converged at the middle in parallax."""
    return StereoRig(DEFAULT_INTEROCULAR, harmonic_middle(NEAR, FAR), mode, "CENTER")


# -- bench splat ----------------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_splat(height: int = 480, width: int = 854, frames: int = 32, batch: int = 4, device: str = "auto",
                mode: str = "OFFAXIS", repeat: int = 5, reference: bool = True, threads: int | None = None,
                torch_ops: bool = False) -> dict:
    """Time both eyes of ``frames`` synthetic frames through :func:`splat_eye`, and the numpy yardstick.

    ``threads`` sets torch's CPU thread count for the run (the compiled kernel runs on that many); ``torch_ops``
    times splat_eye's torch ops where it would run the compiled kernel.

    Returns a dict: ``ms_per_frame`` (ours, both eyes and masks, the best of ``repeat`` runs), ``height``,
    ``width``, ``device``, ``frames``, ``batch``, ``engine`` ("compiled" or "torch"), ``threads`` (CPU threads
    the splatter ran on), and with ``reference``, ``numpy_ms_per_frame`` and ``speedup`` (numpy time over ours).
    """
    import torch

    from ..camera import Intrinsics
    from ..models.loading import resolve_device
    from ..splat import EyeImage, kernel_threads, splat_eye, uses_cpu_kernel

    for name, value in (("--height", height), ("--width", width), ("--frames", frames), ("--batch", batch),
                        ("--repeat", repeat), ("--threads", 1 if threads is None else threads)):
        if value < 1:
            raise InputError(f"{name} {value} is not valid; give 1 or more")
    if threads is not None:
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return bench_splat(height, width, frames, batch, device, mode, repeat, reference, None, torch_ops)
        finally:
            torch.set_num_threads(previous_threads)
    if reference and mode == "TOE":
        raise InputError("the numpy yardstick keeps rows, so it cannot do --convergence-mode TOE; "
                         "add --no-reference to time TOE alone")
    dev = resolve_device(device)
    k = Intrinsics.from_lens(width, height)
    views = list(eye_views(_rig(mode), k.fx).values())
    color, depth = _clip_tensors(min(frames, _POOL), height, width, dev)
    pool = color.shape[0]
    distinct: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor]] = {}
    batches = []
    for start in range(0, frames, batch):
        index = tuple(n % pool for n in range(start, min(frames, start + batch)))
        if index not in distinct:
            chosen = torch.tensor(index, device=dev)
            distinct[index] = (color[chosen], depth[chosen])
        batches.append(distinct[index])

    compiled = not torch_ops and all(uses_cpu_kernel(view, dev) for view in views if not view.is_source)

    outs: dict[tuple[int, int], EyeImage] = {}  # each eye's output, kept from batch to batch as convert does

    def splat(c: torch.Tensor, d: torch.Tensor, eye: int) -> None:
        key = (c.shape[0], eye)
        outs[key] = splat_eye(c, d, k, views[eye], compiled=compiled, out=outs.get(key))

    def ours() -> float:
        _sync(dev)
        t0 = time.perf_counter()
        for c, d in batches:
            for eye in range(len(views)):
                splat(c, d, eye)
        _sync(dev)
        return time.perf_counter() - t0

    # The yardstick runs on the first frames only: its cost per frame does not change along a clip.
    ref_frames = min(frames, pool, 8)
    ref_color, ref_depth = color[:ref_frames].cpu().numpy(), depth[:ref_frames].cpu().numpy()

    def numpy_time() -> float:
        t0 = time.perf_counter()
        for view in views:
            numpy_reference_splat(ref_color, ref_depth, k, view)
        return time.perf_counter() - t0

    for eye in range(len(views)):  # warm: the kernel's compilation, scratch tensors, CUDA kernels
        splat(*batches[0], eye)
    best, best_ref = math.inf, math.inf
    for _ in range(repeat):
        best = min(best, ours())
        if reference:
            best_ref = min(best_ref, numpy_time())
    result = {"ms_per_frame": 1000.0 * best / frames, "height": height, "width": width, "device": str(dev),
              "frames": frames, "batch": batch, "convergence_mode": mode,
              "engine": "compiled" if compiled else "torch",
              # the torch ops run on one CPU thread (see splat._single_threaded_ops)
              "threads": kernel_threads() if compiled else 1 if dev.type == "cpu" else 0}
    if reference:
        result["numpy_ms_per_frame"] = 1000.0 * best_ref / ref_frames
        result["speedup"] = result["numpy_ms_per_frame"] / result["ms_per_frame"]
    return result


def cmd_splat(args: argparse.Namespace) -> int:
    r = bench_splat(args.height, args.width, args.frames, args.batch, args.device, args.convergence_mode,
                    args.repeat, not args.no_reference, args.threads, args.torch_ops)
    fps = 1000.0 / r["ms_per_frame"]
    where = f"{r['threads']} CPU thread{'s' * (r['threads'] != 1)}" if r["threads"] else "the GPU"
    print(f"splat, both eyes and dropout masks, {r['width']}x{r['height']}, {r['frames']} frames in batches of "
          f"{r['batch']}, {r['convergence_mode']}, on {r['device']}:")
    print(f"  stereoforge splat_eye   {r['ms_per_frame']:9.2f} ms per frame  ({fps:.1f} frames/s; "
          f"{'compiled kernel' if r['engine'] == 'compiled' else 'torch ops'}, {where})")
    if "numpy_ms_per_frame" in r:
        print(f"  numpy z-buffer splat    {r['numpy_ms_per_frame']:9.2f} ms per frame  (nearest pixel, "
              "argsort, last write wins)")
        print(f"  speed-up                {r['speedup']:9.1f} x")
    if args.json:
        print(json.dumps(r))
    return 0


# -- bench pipeline -------------------------------------------------------------------------------------------


class _RssSampler:
    """Samples this process's resident set size from /proc in a background thread (Linux; else nothing), and
    keeps the peak per stage as ``convert``'s progress names them (``progress`` below): a stage's allocations
    before its first frame is done count for the stage before, and where stages run at once, for the one that
    reported last."""

    def __init__(self, interval_s: float = 0.02):
        self.interval_s = interval_s
        self.peak = self.start = rss_bytes()
        self.stage = "start"
        self.stage_peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def progress(self, stage: str, done: int, total: int) -> None:
        self.stage = stage

    def _sample(self) -> None:
        rss, stage = rss_bytes(), self.stage
        self.peak = max(self.peak, rss)
        self.stage_peaks[stage] = max(self.stage_peaks.get(stage, 0), rss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def rss_bytes() -> int:
    """Resident set size of this process now, in bytes (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _cpu_seconds() -> float:
    """The CPU time this process has used, all its threads, user and system: on a shared machine it moves less
    with the others' load than the wall time does."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_bytes() -> int:
    """The process's peak resident set size so far (``ru_maxrss``: kilobytes on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def write_synthetic_clip(folder: str, frames: int, height: int, width: int, fps: float = 24.0) -> tuple[str, str]:
    """Write a synthetic clip into ``folder``: ``clip.mp4`` and ``depth.npy`` (relative inverse depth, as a
    depth model gives, (frames, H, W) float32), one frame at a time. Returns their paths.

    The stack is written through a plain file, not a memory map: pages written through a map stay in the
    process's resident memory, and would make a long clip's stack (4.9 GB at 3000 frames of 854x480) the
    benchmark's peak."""
    from ..io.images import to_uint8_srgb
    from ..io.video import VideoWriter

    video, depth_path = os.path.join(folder, "clip.mp4"), os.path.join(folder, "depth.npy")
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
              "shape": (frames, height, width)}
    with open(depth_path, "wb") as stack, VideoWriter(video, width, height, fps, crf=12) as writer:
        np.lib.format.write_array_header_1_0(stack, header)
        for rgb, depth in synthetic_frames(frames, height, width):
            writer.write(to_uint8_srgb(rgb))
            stack.write((1.0 / depth).astype(np.float32).tobytes())
    return video, depth_path


def bench_pipeline(height: int = 480, width: int = 854, frames: int = 48, device: str = "auto", batch: int = 4,
                   layouts: tuple[str, ...] = ("sbs",), cloud: bool = True, workdir: str | None = None,
                   keep: bool = False, inpaint: str = DEFAULT_INPAINTER) -> dict:
    """Run ``convert`` on a synthetic clip and report each stage's seconds per frame and the peak memory.

    ``inpaint`` names the inpainter (one of :data:`stereoforge.inpaint.INPAINTERS`; default: convert's).
    Odd sizes are rounded up to even ones (the clip is H.264). Returns a dict: ``frames``, ``height``,
    ``width``, ``device``, ``inpaint``, ``seconds_per_frame`` (stage -> seconds per
    frame, as ``convert`` times its stages), ``total_seconds_per_frame``, ``peak_rss_mb`` (the process's
    peak), ``rss_before_mb``, ``peak_rss_during_convert_mb`` and ``peak_rss_mb_by_stage`` (sampled), and
    ``gpu_peak_mb`` on CUDA.
    """
    import torch

    from ..models.loading import resolve_device
    from ..pipeline import convert
    from ..spec import ConvertSpec

    for name, value in (("--height", height), ("--width", width), ("--frames", frames), ("--batch", batch)):
        if value < 1:
            raise InputError(f"{name} {value} is not valid; give 1 or more")
    if inpaint not in INPAINTERS:
        raise InputError(f"--inpaint {inpaint!r} is not an inpainter; choose one of {', '.join(INPAINTERS)}")
    dev = resolve_device(device)
    # The clip is an H.264 video, which needs even sizes (an odd one would be padded by the encoder).
    height, width = height + height % 2, width + width % 2
    root = tempfile.mkdtemp(prefix="stereoforge-bench-", dir=workdir)
    try:
        video, depth = write_synthetic_clip(root, frames, height, width)
        spec = ConvertSpec(source=video, output_dir=os.path.join(root, "shot"), depth=depth,
                           depth_kind="relative", near=NEAR, far=FAR, layouts=tuple(layouts), cloud=cloud,
                           device=str(dev), batch=batch, inpaint=inpaint)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        started, cpu = time.perf_counter(), _cpu_seconds()
        with _RssSampler() as rss:
            result = convert(spec, progress=rss.progress)
        total, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    mb = 1.0 / (1024 * 1024)
    report = {
        "frames": frames, "height": height, "width": width, "device": str(dev), "batch": batch, "inpaint": inpaint,
        "seconds_per_frame": {stage: seconds / frames for stage, seconds in result["timings"].items()},
        "total_seconds_per_frame": total / frames,
        "cpu_seconds_per_frame": cpu / frames,
        "peak_rss_mb": peak_rss_bytes() * mb,
        "rss_before_mb": rss.start * mb,
        "peak_rss_during_convert_mb": rss.peak * mb,
        "peak_rss_mb_by_stage": {stage: peak * mb for stage, peak in rss.stage_peaks.items()},
    }
    if dev.type == "cuda":
        report["gpu_peak_mb"] = torch.cuda.max_memory_allocated(dev) * mb
    if keep:
        report["workdir"] = root
    return report


#: What each stage of ``convert`` does, for the table.
_STAGE_NOTES = {
    "plan": "first pass over depth: range, normalisation",
    "ingest": "decode video + depth to metres + write source/depth",
    "cloud": "point clouds, USD",
    "eyes": "splat both eyes + write EXR/masks (reads source/depth)",
    "inpaint": "fill dropout",
    "composite": "stereo layouts",
    "eyes+inpaint+composite": "splat, fill and compose, handed over in memory; write the stereo frames",
    "encode": "video encode",
}


def cmd_pipeline(args: argparse.Namespace) -> int:
    r = bench_pipeline(args.height, args.width, args.frames, args.device, args.batch, args.layout,
                       not args.no_cloud, args.workdir, args.keep, args.inpaint)
    print(f"convert, {r['frames']} frames at {r['width']}x{r['height']} on {r['device']} (batch {r['batch']}, "
          f"inpaint {r['inpaint']}):")
    print(f"  {'stage':<10} {'s/frame':>9}")
    for stage, seconds in r["seconds_per_frame"].items():
        print(f"  {stage:<10} {seconds:9.4f}   {_STAGE_NOTES.get(stage, '')}")
    print("  (the stages run at once where one reads another's files as they are written: their times overlap)")
    print(f"  {'total':<10} {r['total_seconds_per_frame']:9.4f}   CPU {r['cpu_seconds_per_frame']:.4f} s per frame "
          "(all threads)")
    print(f"  peak RSS {r['peak_rss_mb']:.0f} MB (process); {r['rss_before_mb']:.0f} MB before convert, "
          f"{r['peak_rss_during_convert_mb']:.0f} MB at most during it")
    stages = ", ".join(f"{stage} {peak:.0f}" for stage, peak in r["peak_rss_mb_by_stage"].items())
    print(f"  peak RSS by stage (MB, sampled): {stages}")
    if "gpu_peak_mb" in r:
        print(f"  peak GPU memory allocated by torch {r['gpu_peak_mb']:.0f} MB")
    if "workdir" in r:
        print(f"  clip and shot kept in {r['workdir']}")
    if args.json:
        print(json.dumps(r))
    return 0


def bench_chunk(height: int = 480, width: int = 854, frames: int = 300, last: int = 10,
                repeat: int = 3) -> dict:
    """CPU seconds (best of ``repeat``) to read the source and depth frames of a chunk of the clip's ``last``
    frames, from the chunk's first frame and from the clip's first; each frame converted as ingest converts it."""
    from ..io.frames import open_depth, open_source

    start = frames - last
    with tempfile.TemporaryDirectory(prefix="stereoforge-bench-") as folder:
        video, depth_path = write_synthetic_clip(folder, frames, height, width)
        source = open_source(video)
        depth = open_depth(depth_path, source.count, None, (source.height, source.width))

        def read(first: int) -> float:
            begin = _cpu_seconds()
            chunk = [i for (i, _), _ in zip(source.frames(first), depth.frames(first), strict=True) if i >= start]
            assert chunk == list(range(start, frames))
            return _cpu_seconds() - begin

        times = {name: min(read(first) for _ in range(repeat)) for name, first in (("from_start", 0),
                                                                                   ("from_chunk", start))}
    return {"height": height, "width": width, "frames": frames, "last": last,
            "from_start_cpu_s": times["from_start"], "from_chunk_cpu_s": times["from_chunk"]}


def cmd_chunk(args: argparse.Namespace) -> int:
    r = bench_chunk(args.height, args.width, args.frames, args.last, args.repeat)
    print(f"ingest's reading of frames {r['frames'] - r['last'] + 1}..{r['frames']} of a {r['frames']}-frame "
          f"{r['width']}x{r['height']} clip (video + depth stack), CPU seconds, best of {args.repeat}:")
    print(f"  from the chunk's first frame {r['from_chunk_cpu_s']:.3f} s; from the clip's first frame "
          f"{r['from_start_cpu_s']:.3f} s")
    if args.json:
        print(json.dumps(r))
    return 0


# -- command line ---------------------------------------------------------------------------------------------


def _size_options(p: argparse.ArgumentParser, frames: int) -> None:
    p.add_argument("--height", type=int, default=480, help="frame height in pixels (default: %(default)s)")
    p.add_argument("--width", type=int, default=854, help="frame width in pixels (default: %(default)s)")
    p.add_argument("--frames", type=int, default=frames, help="frames in the clip (default: %(default)s)")
    p.add_argument("--batch", type=int, default=4, metavar="N",
                   help="frames splatted together, as convert's --batch (default: %(default)s)")
    p.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda (default: auto)")
    p.add_argument("--json", action="store_true", help="end with one line of JSON holding the figures")


def register(subparsers):
    """Add ``bench splat`` and ``bench pipeline`` to the ``stereoforge`` command line; returns the sub-commands
    of ``bench``, for ``bench quality`` and ``bench blender`` (which use this module)."""
    bench = subparsers.add_parser("bench", help="time the splatter or the whole pipeline; score the inpainters",
                                  description="Time the splatter alone (bench splat) or a whole convert, stage "
                                              "by stage (bench pipeline), on synthetic clips; score the "
                                              "inpainters against Blender's true eyes (bench quality).")
    sub = bench.add_subparsers(dest="bench", metavar="WHAT")
    bench.set_defaults(func=lambda args: (bench.print_help(), 2)[1])

    p = sub.add_parser("splat", help="both eyes and masks from in-memory RGB-D frames, against numpy",
                       description="Time splat_eye alone: both eyes and their dropout masks of warm synthetic "
                                   "RGB-D frames already on the device, no file I/O; and, in the same run, a "
                                   "plain vectorised numpy z-buffer splat as a yardstick.")
    _size_options(p, frames=32)
    p.add_argument("--convergence-mode", choices=CONVERGENCE_MODES, default="OFFAXIS",
                   help="the rig's convergence mode; TOE takes the general four-tap path (default: OFFAXIS)")
    p.add_argument("--repeat", type=int, default=5, help="runs; the best counts (default: %(default)s)")
    p.add_argument("--no-reference", action="store_true", help="skip the numpy yardstick")
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads for the compiled kernel (default: torch's, one per core; the numpy "
                        "yardstick always runs on one)")
    p.add_argument("--torch-ops", action="store_true",
                   help="time splat_eye's torch ops where it would run the compiled CPU kernel")
    p.set_defaults(func=cmd_splat)

    p = sub.add_parser("pipeline", help="a whole convert on a generated clip, stage by stage",
                       description="Write a synthetic clip (video and relative depth with moving objects), "
                                   "convert it, and print each stage's seconds per frame and the peak memory.")
    _size_options(p, frames=48)
    p.add_argument("--layout", type=lambda text: tuple(t for t in text.split(",") if t), default=("sbs",),
                   metavar="LAYOUT[,LAYOUT...]", help="output layouts, as convert's --layout (default: sbs)")
    p.add_argument("--no-cloud", action="store_true", help="skip the USD point clouds, as convert's --no-cloud")
    p.add_argument("--inpaint", choices=sorted(INPAINTERS), default=DEFAULT_INPAINTER,
                   help="how to fill dropout, as convert's --inpaint (default: %(default)s)")
    p.add_argument("--workdir", metavar="DIR", help="where to write the clip and the shot (default: a temporary "
                                                     "folder)")
    p.add_argument("--keep", action="store_true", help="keep the clip and the shot folder")
    p.set_defaults(func=cmd_pipeline)

    p = sub.add_parser("chunk", help="ingest's reading of a farm chunk at a clip's end, seeking or not",
                       description="Write a synthetic clip (video and depth stack) and time reading its last "
                                   "frames from the chunk's first frame (a video seeks) and from the clip's first.")
    p.add_argument("--height", type=int, default=480, help="frame height in pixels (default: %(default)s)")
    p.add_argument("--width", type=int, default=854, help="frame width in pixels (default: %(default)s)")
    p.add_argument("--frames", type=int, default=300, help="frames in the clip (default: %(default)s)")
    p.add_argument("--last", type=int, default=10, help="frames in the chunk, at the end (default: %(default)s)")
    p.add_argument("--repeat", type=int, default=3, help="runs; the best counts (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="end with one line of JSON holding the figures")
    p.set_defaults(func=cmd_chunk)
    return sub
