"""``convert``: a mono clip and its depth become a stereo shot folder.

Stages, each a loop over frames that reads what the stage before wrote into the shot folder (DESIGN.md)::

    ingest     source/000001.png, depth/000001.exr      the frames, and depth in metres
    cloud      cloud/000001.usdc ..., cloud.usdc          per-frame RGB-D point clouds (USD)
    eyes       eyes/{left,right}/000001.exr, masks/...    both eyes splatted, alpha = coverage, dropout masks
    inpaint    filled/{left,right}/000001.png             dropout filled
    composite  out/frames/<layout>/<layout>_000001.png   the stereo frames of each layout (.exr: exr-multiview)
    encode     out/video/<shot>_<layout>.mp4              the videos (.mov for ProRes, --container), with stereo
                                                          metadata and the source's audio

Every file is written under a temporary name and renamed when complete, so a frame that exists is done: a re-run
skips it (resume). Each stage's settings are fingerprinted in ``shot.json``; when they change, that stage's
files (and those of the stages after it) are cleared and made again. Memory does not grow with the clip: only a
batch of frames is in memory at a time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np
import torch

from . import __version__
from .camera import DEFAULT_LENS_MM, Intrinsics
from .cloud import CLIP_FOLDER, cloud_points, frame_clip_path, write_cloud_stage, write_frame_clip
from .comfort import far_limit_px, window_edges
from .composite import (
    FRAME_ONLY_LAYOUTS,
    MULTIVIEW_EXR,
    STEREO_METADATA,
    VR180,
    VR_TAGS,
    compose,
    frame_ext,
    stream_names,
    write_multiview_frame,
)
from .curve import parse_curve, sample
from .depth import DepthConverter, DepthStats, observe, sharpen_edges
from .errors import Cancelled, InputError, disk_error
from .inpaint import INPAINTERS, ClipReader, EyeFrame, PerFrame
from .io.frames import DepthSource, OutsideSource, Source, open_depth, open_source
from .io.images import (
    atomic_path,
    read_depth_file,
    read_exr_channels,
    read_image,
    remove_stale_temporaries,
    to_uint8_srgb,
    write_exr,
    write_png,
)
from .io.video import AudioClip, VideoWriter, check_audio
from .rig import StereoRig, eye_views, harmonic_middle, interocular_for_budget, parallax_px
from .shot import (
    ANIMATED_RIG,
    CLOUD_USD,
    EYES,
    JOB_INPUTS,
    SHOT_JSON,
    STAGE_OUTPUTS,
    STAGES,
    UPSTREAM,
    frame_name,
)
from .spec import DEFAULT_FPS, DEFAULT_INTEROCULAR, ConvertSpec, video_container
from .splat import EyeImage, splat_eye

#: A pixel covered less than this is dropout (the splatter's default, and the rule for Blender's alpha).
COVERAGE_THRESHOLD = 0.5

#: ``progress(stage, done, total)``: called as frames finish (``done`` counts skipped frames too).
Progress = Callable[[str, int, int], None]


@dataclass
class Plan:
    """A spec with everything worked out from the clip: the camera, the rig, the depth range."""

    spec: ConvertSpec
    shot_dir: str
    name: str
    intrinsics: Intrinsics
    #: The rig of each shot frame (one entry per frame; all equal unless the rig is animated).
    rigs: tuple[StereoRig, ...]
    depth_range: tuple[float, float]
    fps: float
    count: int
    source_info: dict
    converter: DepthConverter
    #: The spec as asked for, when ``spec`` differs from it (depth estimated by a model into the shot).
    requested: ConvertSpec | None = None
    #: Provenance of the models that made this shot's inputs, by stage, for shot.json.
    models: dict = dataclasses.field(default_factory=dict)
    #: Nearest and farthest metric depth of each frame.
    frame_ranges: tuple[np.ndarray, np.ndarray] | None = None
    #: Frames whose rig the comfort limits narrowed, for shot.json.
    clamped: list[int] = dataclasses.field(default_factory=list)

    #: The torch device that splats, checked with the rest of the input.
    device: torch.device = torch.device("cpu")

    @property
    def rig(self) -> StereoRig:
        """The rig of the first frame (the shot's rig, when it does not move)."""
        return self.rigs[0]

    @property
    def source_ext(self) -> str:
        return "exr" if self.source_info["is_float"] else "png"

    def fingerprints(self) -> dict[str, str]:
        """One short hash per stage of the settings that shape its files, its upstream stage's included."""
        s = self.spec
        settings = {
            "ingest": [os.path.abspath(s.source), os.path.abspath(s.depth), s.frames, s.depth_kind, s.depth_scale,
                       s.near, s.far, s.depth_smoothing, s.depth_edge_radius, self.intrinsics.fx,
                       self.converter.baseline if s.depth_kind == "disparity" else None]
                      + ([s.depth_model, self.models["depth"].get("request")] if s.depth_model else []),
            "cloud": [s.cloud_stride],
            "eyes": [self.rig.to_dict()] + ([r.to_dict() for r in self.rigs] if len(set(self.rigs)) > 1 else []),
            "inpaint": [s.inpaint] + ([s.inpaint_model, s.inpaint_prompt, s.inpaint_steps, s.inpaint_chunk,
                                       s.inpaint_overlap, s.inpaint_tile, s.inpaint_tile_overlap, s.seed,
                                       s.model_dtype] if s.inpaint_model else []),
            "composite": [list(s.layouts)] + (["floating window"] if s.floating_window else []),
            "encode": [s.codec, s.crf, self.fps, s.container, s.vr_tags],
        }
        prints: dict[str, str] = {}
        for stage in STAGES:
            upstream = prints.get(UPSTREAM.get(stage, ""), "")
            text = json.dumps([upstream, settings[stage]], default=str)
            prints[stage] = hashlib.sha1(text.encode()).hexdigest()[:16]
        return prints


def _check_paths(spec: ConvertSpec) -> None:
    out = os.path.abspath(spec.output_dir)
    owned = {os.path.join(out, name) for name in JOB_INPUTS}
    for label, path in (("source", spec.source), ("depth", spec.depth)):
        if path is None:
            continue
        p = os.path.abspath(path)
        if not os.path.exists(p):
            raise InputError(f"{label} '{path}' does not exist; check the path")
        if p in owned:
            continue
        if p == out or p.startswith(out + os.sep):
            raise InputError(f"{label} '{path}' lies inside the output folder '{spec.output_dir}'; StereoForge "
                             "never writes over its inputs, so give an output folder outside it")
        if out.startswith(p + os.sep):
            raise InputError(f"the output folder '{spec.output_dir}' lies inside the {label} folder '{path}'; "
                             "give an output folder outside it")
    if os.path.isdir(out) and os.listdir(out) and not os.path.exists(os.path.join(out, SHOT_JSON)):
        raise InputError(f"output folder '{spec.output_dir}' exists, is not empty and holds no shot.json; "
                         "give a new or empty folder (or an existing shot folder to resume it)")
    if os.path.exists(out) and not os.path.isdir(out):
        raise InputError(f"output '{spec.output_dir}' is a file; give a folder")
    _check_can_write(out)
    record = os.path.join(out, SHOT_JSON)
    if os.path.lexists(record) and not os.path.isfile(record):
        raise InputError(f"'{record}' is not a file: a shot folder's record must be; move it away and run again")


def _check_can_write(folder: str) -> None:
    """``folder`` exists as a folder that may be written, or can be made: its nearest existing ancestor is a
    folder that may be written (no file in the way, no read-only disk, no missing permission)."""
    existing = folder
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        where = "" if existing == folder else f" (where the folder '{folder}' is to be made)"
        raise InputError(f"'{existing}' is a file where a folder belongs{where}; move the file away and run again")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"cannot write into '{existing}': no permission, or a read-only disk; give a folder "
                         "that may be written")


def plan(spec: ConvertSpec, progress: Progress | None = None, cancel: Callable[[], bool] | None = None,
         log: Callable[[str], None] | None = None) -> Plan:
    """Check every input and work out the camera, the rig and the depth range, writing nothing (but the depth
    a ``depth_model`` estimates, into ``estimated_depth/``).

    Reads all depth once (the first pass): the depth range and the relative-depth normalisation need the whole
    clip, and a broken depth frame must stop the job before anything is written.
    """
    spec.check()
    _check_paths(spec)
    if spec.depth_model is not None or spec.inpaint_model is not None:
        from .models.registry import check_available

        check_available(spec)
    requested, models = spec, {}
    # The inputs are read where they resolve now: a symlink swapped while the job runs changes nothing.
    spec = dataclasses.replace(spec, source=os.path.realpath(spec.source),
                               depth=None if spec.depth is None else os.path.realpath(spec.depth))
    if spec.depth_model is not None:
        from .models.depth import estimate_into_shot

        estimated = estimate_into_shot(spec, progress, cancel, log)
        spec = dataclasses.replace(spec, depth=estimated.folder, depth_kind=estimated.kind)
        models["depth"] = estimated.info
    source, depth = open_inputs(spec)
    device = _device(spec.device)

    if spec.focal_px is not None:
        k = Intrinsics.from_focal(source.width, source.height, spec.focal_px)
    elif spec.hfov is not None:
        k = Intrinsics.from_hfov(source.width, source.height, spec.hfov)
    else:
        k = Intrinsics.from_lens(source.width, source.height, DEFAULT_LENS_MM)

    disparity = spec.depth_kind == "disparity"
    interocular = spec.interocular or DEFAULT_INTEROCULAR
    baseline = spec.baseline or interocular
    stats = DepthStats(spec.depth_kind)
    for i, raw in depth.frames():
        observe(stats, raw, label=f"depth frame {i + 1} of '{spec.depth}'", scale=spec.depth_scale,
                focal_px=k.fx, baseline=baseline)
        if progress:
            progress("depth range", i + 1, depth.count)
    source.check(None if progress is None else lambda done: progress("source check", done, source.count))
    fps = spec.fps or source.fps or DEFAULT_FPS
    converter = DepthConverter.from_stats(stats, spec.depth_smoothing * fps, scale=spec.depth_scale,
                                          near=spec.near, far=spec.far, focal_px=k.fx, baseline=baseline)
    near, far = converter.metric_range(stats)

    # A measured disparity is reproduced by parallel eyes one baseline apart, the source being the left one.
    mode = spec.convergence_mode or ("PARALLEL" if disparity else "OFFAXIS")
    pivot = spec.pivot or ("LEFT" if disparity else "CENTER")
    if disparity and spec.interocular is None and spec.interocular_curve is None:
        interocular = baseline
    rigs, clamped = _frame_rigs(spec, source.count, k, (near, far), mode, pivot, interocular,
                                log or (lambda message: None))

    name = os.path.basename(os.path.normpath(os.path.abspath(spec.output_dir))) or "shot"
    info = {"kind": source.kind, "width": source.width, "height": source.height, "fps": source.fps,
            "first_frame": source.first_index + 1, "is_float": source.is_float}
    return Plan(spec, os.path.abspath(spec.output_dir), name, k, rigs, (near, far), fps, source.count, info,
                converter, requested=requested if requested is not spec else None, models=models,
                frame_ranges=converter.frame_ranges(stats), clamped=clamped, device=device)


def _frame_rigs(spec: ConvertSpec, count: int, k: Intrinsics, depth_range: tuple[float, float], mode: str,
                pivot: str, interocular: float, log) -> tuple[tuple[StereoRig, ...], list[int]]:
    """The rig of every frame: the interocular from --interocular, a depth budget or their curves, the
    convergence from --convergence-distance, its curve or the clip's depth range; then narrowed where the
    farthest point breaks a comfort limit (:func:`comfort.far_limit_px`). Returns the rigs and the narrowed
    frames (1-based)."""
    near, far = depth_range
    per_frame = lambda text, option: sample(parse_curve(text, option), count)
    convergence = (per_frame(spec.convergence_curve, "--convergence-curve") if spec.convergence_curve else
                   np.full(count, spec.convergence_distance or harmonic_middle(near, far)))
    budget = (per_frame(spec.max_parallax_curve, "--max-parallax-curve") if spec.max_parallax_curve else
              None if spec.max_parallax is None else np.full(count, spec.max_parallax))
    if budget is not None:
        interoculars = [interocular_for_budget(float(b), k.width, k.fx, near, None if mode == "PARALLEL" else float(c))
                        for b, c in zip(budget, convergence, strict=True)]
    elif spec.interocular_curve:
        interoculars = per_frame(spec.interocular_curve, "--interocular-curve")
    else:
        interoculars = np.full(count, interocular)
    rigs = [StereoRig(float(b), float(c), mode, pivot) for b, c in zip(interoculars, convergence, strict=True)]
    limit = far_limit_px(k.width, spec.max_far_parallax, spec.screen_width)
    clamped, worst = [], 0.0
    for n, rig in enumerate(rigs):
        behind = float(parallax_px(rig, k.fx, far))
        if limit is not None and behind > limit:
            rigs[n] = dataclasses.replace(rig, interocular_distance=rig.interocular_distance * limit / behind)
            clamped.append(n + 1)
            worst = max(worst, behind)
    if clamped:
        log(f"warning: the farthest point ({far:.2f} m) would be up to {100 * worst / k.width:.2f} % of the width "
            f"behind the screen, past the far limit of {100 * limit / k.width:.2f} %: the interocular is "
            f"narrowed on {len(clamped)} of {count} frames (change --max-far-parallax, --screen-width or the rig)")
    return tuple(rigs), clamped


def open_inputs(spec: ConvertSpec) -> tuple[Source, DepthSource]:
    """The spec's source and depth, narrowed to ``--frames`` (1-based, inclusive, as the option is written)."""
    first, last = spec.frames or (None, None)
    frames = None if spec.frames is None else ((first or 1) - 1, last)
    try:
        source = open_source(spec.source, frames=frames)
    except OutsideSource as exc:
        asked = f"{first or 1}:{'' if last is None else last}"
        raise InputError(f"--frames {asked} does not fit '{spec.source}', which has {exc.total} frame"
                         f"{'s' if exc.total != 1 else ''}; choose A:B with 1 <= A <= B <= {exc.total} "
                         "(both ends included)") from None
    depth = open_depth(spec.depth, count=source.count, frames=frames, size=(source.height, source.width),
                       total=source.total)
    return source, depth


class _Job:
    """One run of the stages on a shot, or on a part of it (:func:`run_stage`): ``chunk`` (shot frames first..last,
    1-based, inclusive) limits the per-frame stages, ``inpaint_eyes`` the eyes inpaint fills, ``streams`` the videos
    encode writes."""

    def __init__(self, plan: Plan, progress: Progress | None, cancel: Callable[[], bool] | None, log, *,
                 chunk: tuple[int, int] | None = None, inpaint_eyes: tuple[str, ...] = EYES,
                 streams: tuple[str, ...] | None = None):
        self.plan = plan
        self.chunk = chunk
        self.inpaint_eyes = inpaint_eyes
        self.streams = streams
        self.dir = plan.shot_dir
        self.progress = progress or (lambda stage, done, total: None)
        self.cancel = cancel or (lambda: False)
        self.log = log or (lambda message: None)
        self.device = plan.device
        self._eye_images: dict[tuple[str, int], EyeImage] = {}  # splat_eye writes each batch into the last one's
        self.timings: dict[str, float] = {}

    def path(self, *parts: str) -> str:
        return os.path.join(self.dir, *parts)

    def check_stages(self, stages: tuple[str, ...]) -> None:
        """Before anything is cleared or written: each stage to run finds the files its upstream stage made
        (when that one does not run now) and may write its folders."""
        if "encode" in stages and self.audio() is not None:
            check_audio(self.audio(), video_container(self.plan.spec))
        for stage in stages:
            if UPSTREAM.get(stage) not in stages:
                self.require_inputs(stage)
            for folder in self.stage_dirs(stage):
                _check_can_write(folder)

    def stage_dirs(self, stage: str) -> list[str]:
        """The folders ``stage`` writes its frames into."""
        streams = [s for layout in self.plan.spec.layouts for s in stream_names(layout)]
        return {
            "ingest": [self.path("source"), self.path("depth")],
            "cloud": [self.path(CLIP_FOLDER)],
            "eyes": [self.path(kind, eye) for kind in ("eyes", "masks") for eye in EYES],
            "inpaint": [self.path("filled", eye) for eye in EYES],
            "composite": [self.path("out", "frames", stream) for stream in streams],
            "encode": [self.path("out", "video")],
        }[stage]

    def make_dirs(self, stage: str) -> None:
        for folder in self.stage_dirs(stage):
            os.makedirs(folder, exist_ok=True)

    def require_inputs(self, stage: str) -> None:
        """Before a stage runs on its own: the files it reads must be there, for the first and last frame."""
        needs = {
            "cloud": lambda n: [self.path("source", frame_name(n, self.plan.source_ext)),
                                self.path("depth", frame_name(n, "exr"))],
            "eyes": lambda n: [self.path("source", frame_name(n, self.plan.source_ext)),
                               self.path("depth", frame_name(n, "exr"))],
            "inpaint": lambda n: [self.path("eyes", eye, frame_name(n, "exr")) for eye in EYES],
            "composite": lambda n: [self.path("filled", eye, frame_name(n, "png")) for eye in EYES],
            "encode": lambda n: [self.composite_frame(stream, n) for layout in self.video_layouts()
                                 for stream in stream_names(layout)],
        }.get(stage)
        if needs is None:
            return
        for n in sorted(set(self.frame_range())):
            for path in needs(n):
                if not os.path.exists(path):
                    upstream = UPSTREAM[stage]
                    raise InputError(f"'{path}' is missing, so the '{stage}' stage cannot run; run the "
                                     f"'{upstream}' stage first (--stages {upstream},{stage})")

    def frame_range(self) -> tuple[int, int]:
        """The first and last shot frame (1-based) this run does: its chunk, else the whole shot."""
        return self.chunk or (1, self.plan.count)

    def frames_to_do(self, stage: str, outputs: Callable[[int], list[str]]) -> Iterator[int]:
        """Shot frame numbers (1-based) of this run whose outputs are missing; reports progress for the done
        ones too."""
        first, last = self.frame_range()
        total = last - first + 1
        done = 0
        for n in range(first, last + 1):
            if self.cancel():
                raise Cancelled(f"cancelled during {stage}; the frames finished so far are kept in '{self.dir}'")
            if all(os.path.exists(p) for p in outputs(n)):
                done += 1
                self.progress(stage, done, total)
                continue
            yield n
            done += 1
            self.progress(stage, done, total)

    # -- stages -------------------------------------------------------------------------------------------

    def ingest(self) -> None:
        spec, source_ext = self.plan.spec, self.plan.source_ext
        self.make_dirs("ingest")
        outputs = lambda n: [self.path("source", frame_name(n, source_ext)), self.path("depth", frame_name(n, "exr"))]
        first, last = self.frame_range()
        total = last - first + 1
        todo = {n for n in range(first, last + 1) if not all(os.path.exists(p) for p in outputs(n))}
        done = total - len(todo)
        self.progress("ingest", done, total)
        if not todo:
            return
        source, depth = open_inputs(spec)
        # Decoding is sequential (a video cannot skip ahead cheaply): frames already written are decoded and passed.
        for (i, rgb), (_, raw) in zip(source.frames(), depth.frames(), strict=True):
            n = i + 1
            if n > last:
                break
            if n not in todo:
                continue
            if self.cancel():
                raise Cancelled(f"cancelled during ingest; the frames finished so far are kept in '{self.dir}'")
            if source_ext == "exr":
                rgb = _storable_half(rgb)
                write_exr(self.path("source", frame_name(n, "exr")), {c: rgb[..., j] for j, c in enumerate("RGB")},
                          half=True)
            else:
                write_png(self.path("source", frame_name(n, "png")), to_uint8_srgb(rgb))
            metric = sharpen_edges(self.plan.converter(raw, i), spec.depth_edge_radius)
            write_exr(self.path("depth", frame_name(n, "exr")), {"Z": np.nan_to_num(metric, nan=np.inf)})
            done += 1
            self.progress("ingest", done, total)

    def read_frame(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        rgb = read_image(self.path("source", frame_name(n, self.plan.source_ext)))
        depth = read_depth_file(self.path("depth", frame_name(n, "exr")))
        return rgb, depth

    def cloud(self) -> None:
        spec, k = self.plan.spec, self.plan.intrinsics
        self.make_dirs("cloud")
        for n in self.frames_to_do("cloud", lambda n: [frame_clip_path(self.dir, n)]):
            rgb, depth = self.read_frame(n)
            points, colors, widths = cloud_points(rgb, depth, k, stride=spec.cloud_stride)
            with _usd_writing(frame_clip_path(self.dir, n)):
                write_frame_clip(frame_clip_path(self.dir, n), n, points, colors, widths)
        # The top-level stage is tiny and records the rig and the frame rate: made on every run (and replaced
        # when it differs), so it never goes stale when only those change.
        with _usd_writing(self.path(CLOUD_USD)):
            write_cloud_stage(self.dir, self.plan.count, self.plan.fps, k,
                              custom={"rig": self.plan.rig.to_dict(), "focal_px": k.fx, "width": k.width,
                                      "height": k.height, **_rig_frames(self.plan)})

    def eyes(self) -> None:
        """Both eyes of each frame, splatted a batch at a time; a batch holds frames of one rig (an animated
        rig splats frame by frame)."""
        k, batch, rigs = self.plan.intrinsics, self.plan.spec.batch, self.plan.rigs
        self.make_dirs("eyes")
        outputs = lambda n: [self.path(kind, eye, frame_name(n, ext)) for eye in EYES
                             for kind, ext in (("eyes", "exr"), ("masks", "png"))]
        pending: list[int] = []
        for n in self.frames_to_do("eyes", outputs):
            if pending and rigs[n - 1] != rigs[pending[0] - 1]:
                self._render_eyes(pending, k, eye_views(rigs[pending[0] - 1], k.fx))
                pending = []
            pending.append(n)
            if len(pending) == batch:
                self._render_eyes(pending, k, eye_views(rigs[n - 1], k.fx))
                pending = []
        if pending:
            self._render_eyes(pending, k, eye_views(rigs[pending[0] - 1], k.fx))
        self._eye_images.clear()

    def _render_eyes(self, numbers: list[int], k: Intrinsics, views) -> None:
        frames = [self.read_frame(n) for n in numbers]
        color = torch.from_numpy(np.stack([f[0] for f in frames])).permute(0, 3, 1, 2).to(self.device)
        depth = torch.from_numpy(np.stack([f[1] for f in frames])).to(self.device)
        for eye in EYES:
            key = (eye, len(numbers))
            image = self._eye_images[key] = splat_eye(color, depth, k, views[eye], out=self._eye_images.get(key))
            rgba = image.rgba.permute(0, 2, 3, 1).cpu().numpy()
            eye_depth = image.depth.cpu().numpy()
            dropout = image.dropout.cpu().numpy()
            for j, n in enumerate(numbers):
                channels = {c: rgba[j, ..., i] for i, c in enumerate("RGBA")}
                channels["Z"] = eye_depth[j]
                write_exr(self.path("eyes", eye, frame_name(n, "exr")), channels, half=True)
                write_png(self.path("masks", eye, frame_name(n, "png")), dropout[j].astype(np.uint8) * 255)

    def inpaint(self) -> None:
        if self.plan.spec.inpaint_model is not None:
            from .models.inpaint import inpaint_stage

            return inpaint_stage(self)
        make = INPAINTERS[self.plan.spec.inpaint]
        self.make_dirs("inpaint")
        # One inpainter per eye, reading its window of frames from eyes/ (whether or not they are filled yet)
        # and, when resuming, the fill of the frame before the first one to do from filled/.
        inpainters = {eye: make(self.clip(eye)) for eye in self.inpaint_eyes}
        outputs = lambda n: [self.path("filled", eye, frame_name(n, "png")) for eye in self.inpaint_eyes]

        def fill(eye: str, n: int) -> None:
            write_png(self.path("filled", eye, frame_name(n, "png")), inpainters[eye].fill(n))

        # The eyes are independent of each other: each on its own thread (OpenCV and numpy's array work
        # releases the GIL), frame by frame, so a cancel between frames leaves no eye behind the other.
        with ThreadPoolExecutor(len(self.inpaint_eyes), thread_name_prefix="stereoforge-inpaint") as pool:
            for n in self.frames_to_do("inpaint", outputs):
                for future in [pool.submit(fill, eye, n) for eye in self.inpaint_eyes]:
                    future.result()

    def clip(self, eye: str) -> ClipReader:
        """One eye of the shot as an inpainter reads it: its frames from eyes/ and masks/, and the fills an
        earlier run left in filled/ (the default inpainter and a model's inpaint stage read the same)."""
        return ClipReader(partial(self._eye_frame, eye), partial(self._filled_frame, eye))

    def _eye_frame(self, eye: str, n: int) -> EyeFrame | None:
        """Frame ``n`` of ``eye`` for an inpainter, None past either end of the clip."""
        if not 1 <= n <= self.plan.count:
            return None
        rgb, alpha, depth = read_eye(self.path("eyes", eye, frame_name(n, "exr")))
        mask_path = self.path("masks", eye, frame_name(n, "png"))
        if os.path.exists(mask_path):
            dropout = read_mask(mask_path)
        else:  # eyes from another renderer (Blender): dropout is where coverage stayed under half
            dropout = alpha < COVERAGE_THRESHOLD
            os.makedirs(os.path.dirname(mask_path), exist_ok=True)
            write_png(mask_path, dropout.astype(np.uint8) * 255)
        return EyeFrame(rgb, alpha, depth, dropout)

    def _filled_frame(self, eye: str, n: int) -> np.ndarray | None:
        """Frame ``n`` of ``eye`` as filled by an earlier run (uint8 sRGB), or None."""
        # Unreadable: that frame is filled again, not resumed from.
        return read_png8(self.path("filled", eye, frame_name(n, "png"))) if 1 <= n <= self.plan.count else None

    def composite(self) -> None:
        streams = [s for layout in self.plan.spec.layouts for s in stream_names(layout)]
        self.make_dirs("composite")
        outputs = lambda n: [self.composite_frame(stream, n) for stream in streams]
        k = self.plan.intrinsics
        for n in self.frames_to_do("composite", outputs):
            # Each eye's own camera (its lens shift follows the frame's rig), for the layouts that reproject.
            eyes = {eye: dataclasses.replace(k, cx=k.cx - view.shift_px)
                    for eye, view in eye_views(self.plan.rigs[n - 1], k.fx).items()}
            left, right = (read_image(self.path("filled", eye, frame_name(n, "png"))) for eye in EYES)
            if self.plan.spec.floating_window:
                depth = read_depth_file(self.path("depth", frame_name(n, "exr")))
                on_left, on_right = window_edges(depth, self.plan.rigs[n - 1], k.fx)
                left[:, :on_left] = 0
                right[:, right.shape[1] - on_right:] = 0
            for layout in self.plan.spec.layouts:
                if layout == MULTIVIEW_EXR:
                    masks = [read_mask(self.path("masks", eye, frame_name(n, "png"))) for eye in EYES]
                    write_multiview_frame(self.composite_frame(layout, n), left, right, *masks)
                    continue
                for stream, frame in compose(left, right, layout, eyes).items():
                    write_png(self.composite_frame(stream, n), frame)

    def composite_frame(self, stream: str, n: int) -> str:
        return self.path("out", "frames", stream, f"{stream}_{n:06d}.{frame_ext(stream)}")

    def video_layouts(self) -> list[str]:
        return video_layouts(self.plan.spec)

    def video_path(self, layout: str, stream: str) -> str:
        spec = self.plan.spec
        tag = VR_TAGS.get(layout, "") if spec.vr_tags else ""
        return self.path("out", "video", f"{self.plan.name}_{stream}{tag}{video_container(spec)}")

    def audio(self) -> AudioClip | None:
        """A video source's audio, from the time of the first frame taken (--frames)."""
        info = self.plan.source_info
        if info["kind"] != "video":
            return None
        return AudioClip(self.plan.spec.source, (info["first_frame"] - 1) / info["fps"])

    def encode(self) -> list[str]:
        spec = self.plan.spec
        self.make_dirs("encode")
        audio = self.audio()
        written = []
        for layout in self.video_layouts():
            for stream in stream_names(layout):
                if self.streams is not None and stream not in self.streams:
                    continue
                path = self.video_path(layout, stream)
                written.append(path)
                if os.path.exists(path):
                    self.progress(f"encode {stream}", self.plan.count, self.plan.count)
                    continue
                first = read_image(self.composite_frame(stream, 1))
                h, w = first.shape[:2]
                with VideoWriter(path, w, h, self.plan.fps, codec=spec.codec, crf=spec.crf,
                                 stereo=STEREO_METADATA.get(layout), audio=audio,
                                 projection=VR180 if layout == VR180 else None) as video:
                    for n in range(1, self.plan.count + 1):
                        if self.cancel():
                            raise Cancelled(f"cancelled while encoding '{path}'; the frames are kept in "
                                            f"'{self.path('out', 'frames')}'")
                        video.write(_composite_png(self.composite_frame(stream, n)))
                        self.progress(f"encode {stream}", n, self.plan.count)
        return written


@contextlib.contextmanager
def _usd_writing(path: str) -> Iterator[None]:
    """USD reports a failed write (a full disk, a folder that may not be written) as its own exception."""
    from pxr import Tf

    try:
        yield
    except Tf.ErrorException as exc:
        reason = (re.findall(r" : '(.*?)'", str(exc)) or [" ".join(str(exc).split())])[0]
        raise InputError(f"cannot write '{path}': USD says: {reason}; check that the disk has space and the "
                         "folder may be written, then run the same command again to resume") from None


def _storable_half(rgb: np.ndarray) -> np.ndarray:
    """Float colour as a half-float EXR can hold it: NaN (no colour) black, infinities and values past half's
    range at its largest, so that nothing downstream meets a non-finite value (nor numpy warns of one)."""
    limit = float(np.finfo(np.float16).max)
    return np.clip(np.nan_to_num(rgb, nan=0.0, posinf=limit, neginf=-limit), -limit, limit)


def read_png8(path: str) -> np.ndarray | None:
    """An 8-bit image as its uint8 sRGB codes (H, W, 3), RGB order; None when it is missing or unreadable."""
    image = cv2.imread(path, cv2.IMREAD_COLOR) if os.path.exists(path) else None
    return None if image is None else image[..., ::-1].copy()


def _composite_png(path: str) -> np.ndarray:
    image = read_png8(path)
    if image is None:
        raise InputError(f"cannot read composite frame '{path}'; delete it and run again to remake it")
    return image


def read_eye(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An eye EXR -> (straight linear RGB (H, W, 3), alpha (H, W), depth (H, W), +inf where empty).

    Takes the backend's channels (R, G, B, A, Z) and Blender's multilayer ones (``<layer>.Combined.R``...,
    ``<layer>.Depth.Z``); RGB is premultiplied by alpha in both, as Blender writes it.
    """
    ch = read_exr_channels(path, "eye")

    def channel(name: str, *suffixes: str) -> np.ndarray | None:
        if name in ch:
            return ch[name]
        for key in sorted(ch):
            if any(key.endswith(suffix) for suffix in suffixes):
                return ch[key]
        return None

    rgba = [channel(c, f"Combined.{c}", f".{c}") for c in "RGBA"]
    if any(c is None for c in rgba):
        raise InputError(f"eye '{path}' has no R, G, B and A channels (it has {', '.join(sorted(ch))}); "
                         "render it with transparent film to RGBA EXR")
    rgb = np.stack([c.astype(np.float32) for c in rgba[:3]], axis=-1)
    alpha = rgba[3].astype(np.float32)
    z = channel("Z", "Depth.Z")
    depth = z.astype(np.float32) if z is not None else np.full(alpha.shape, np.inf, np.float32)
    depth = np.where(alpha > 0, depth, np.inf).astype(np.float32)
    straight = np.where(alpha[..., None] > 1e-6, rgb / np.maximum(alpha[..., None], 1e-6), 0.0)
    return straight.astype(np.float32), alpha, depth


def read_mask(path: str) -> np.ndarray:
    import cv2

    mask = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise InputError(f"cannot read dropout mask '{path}'")
    return mask > 127


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name}: this torch ({torch.__version__}) sees no CUDA GPU; use --device cpu "
                         "or install a CUDA build of torch")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise InputError(f"--device {name!r} is not a torch device ({exc}); use auto, cpu or cuda") from None


def _versions() -> dict:
    import av
    import pxr

    return {"stereoforge": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "av": av.__version__, "usd": ".".join(map(str, pxr.Usd.GetVersion())) if hasattr(pxr, "Usd") else None}


def _prepare_shot(plan: Plan, stages: tuple[str, ...], log) -> None:
    """Create the shot folder, clear the stages to run whose settings changed, and write shot.json.

    Stages not run now keep their files and their recorded settings: another tool (Blender rendering the
    eyes) may have made them.
    """
    meta_path = os.path.join(plan.shot_dir, SHOT_JSON)
    prints = plan.fingerprints()
    previous_meta = _read_record(meta_path)
    if previous_meta is None:
        log(f"'{meta_path}' cannot be read (cut short or not a shot record): remaking every stage run now")
        previous_meta = {}
        unknown = set(stages)
    else:
        unknown = set()
    os.makedirs(plan.shot_dir, exist_ok=True)
    previous = previous_meta.get("stages", {})
    for stage in stages:
        if stage in unknown or (stage in previous and previous[stage] != prints[stage]):
            for rel in STAGE_OUTPUTS[stage]:
                target = os.path.join(plan.shot_dir, rel)
                if os.path.isdir(target):
                    shutil.rmtree(target)
                elif os.path.exists(target):
                    os.remove(target)
            if stage not in unknown:
                log(f"settings of '{stage}' changed since the last run: remaking it")
    k = plan.intrinsics
    requested = plan.requested or plan.spec
    meta = {
        "stereoforge": __version__,
        "spec": {**requested.to_dict(), **{key: os.path.abspath(getattr(requested, key))
                                          for key in ("source", "depth", "output_dir") if getattr(requested, key)}},
        "frames": plan.count,
        "fps": plan.fps,
        "source": plan.source_info,
        "camera": {"width": k.width, "height": k.height, "focal_px": k.fx, "cx": k.cx, "cy": k.cy,
                   "hfov_deg": k.hfov_deg, "lens_mm": k.lens_mm, "sensor_width_mm": 36.0},
        "rig": plan.rig.to_dict(),
        **_rig_frames(plan),
        "depth_range_m": list(plan.depth_range),
        **_parallax_report(plan),
        "stages": {**previous, **{stage: prints[stage] for stage in stages}},
        "versions": _versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if plan.models or "models" in previous_meta:
        meta["models"] = {**previous_meta.get("models", {}), "depth": None, **plan.models}
        from .models.loading import versions as model_versions

        meta["versions"].update(model_versions())
    # What other tools recorded here (generate's prompt, seed and video model) stays.
    meta = {**{key: value for key, value in previous_meta.items() if key not in meta}, **meta}
    with atomic_path(meta_path) as tmp, open(tmp, "w") as f:
        json.dump(meta, f, indent=2, default=str)


def _rig_frames(plan: Plan) -> dict:
    """shot.json's ``rig_frames``: each animated rig value, one per frame (Blender keys its camera with them)."""
    return {"rig_frames": {name: [getattr(rig, name) for rig in plan.rigs] for name in ANIMATED_RIG}}


def _parallax_report(plan: Plan) -> dict:
    """The shot's parallax: over the clip (``parallax_px``: its nearest and farthest points through each
    frame's rig, the extremes), and frame by frame (``parallax_frames``: each frame's own nearest and farthest
    point, in pixels and in % of the width), with the frames the comfort limits narrowed."""
    fx, width = plan.intrinsics.fx, plan.intrinsics.width
    near_m, far_m = plan.frame_ranges
    near = [float(parallax_px(rig, fx, z)) for rig, z in zip(plan.rigs, near_m, strict=True)]
    far = [float(parallax_px(rig, fx, z)) for rig, z in zip(plan.rigs, far_m, strict=True)]
    clip = [[float(parallax_px(rig, fx, z)) for rig in plan.rigs] for z in plan.depth_range]
    pct = lambda values: [round(100.0 * v / width, 4) for v in values]
    return {"parallax_px": {"near": min(clip[0]), "far": max(clip[1])},
            "parallax_frames": {"near_px": near, "far_px": far, "near_pct": pct(near), "far_pct": pct(far)},
            "comfort": {"max_parallax_pct": plan.spec.max_parallax, "max_far_parallax_pct": plan.spec.max_far_parallax,
                        "screen_width_m": plan.spec.screen_width, "narrowed_frames": plan.clamped}}


def _read_record(path: str) -> dict | None:
    """A shot's shot.json: {} when there is none yet, None when it cannot be read or is not a record (then
    nothing in the shot can be trusted to match the settings; a record cut short by a crash is the usual
    cause)."""
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    stages = record.get("stages", {}) if isinstance(record, dict) else None
    if not isinstance(stages, dict) or not all(isinstance(v, str) for v in stages.values()):
        return None
    return record


def convert(spec: ConvertSpec, progress: Progress | None = None, cancel: Callable[[], bool] | None = None,
            log: Callable[[str], None] | None = None, *, chunk: tuple[int, int] | None = None,
            prepare_only: bool = False) -> dict:
    """Run (or resume) a convert job; returns ``{"shot_dir", "videos", "timings", "frames", "size"}``.

    ``chunk``: do only shot frames first..last (1-based, inclusive) of the per-frame stages, as one task of a
    render farm does while others do the rest (see :func:`prepare`). ``prepare_only``: ready the shot folder
    for the chunks and run no stage.

    Raises :class:`InputError` for bad input, found before anything in the shot is cleared or written (and
    for a full disk or a folder that may not be written, met later: the frames finished before stay), and
    :class:`Cancelled` when ``cancel()`` turns true (the finished frames stay).
    """
    try:
        return _convert(spec, progress, cancel, log, chunk, prepare_only)
    except OSError as exc:
        raise disk_error(exc) from None


def _convert(spec: ConvertSpec, progress: Progress | None, cancel: Callable[[], bool] | None,
             log: Callable[[str], None] | None, chunk: tuple[int, int] | None, prepare_only: bool) -> dict:
    started = time.perf_counter()
    log = log or (lambda m: None)
    p, stages = prepare(spec, progress, cancel, log, chunk)
    timings = {"plan": time.perf_counter() - started}
    videos: list[str] = []
    job = _Job(p, progress, cancel, log, chunk=chunk)
    for stage in () if prepare_only else stages:
        t0 = time.perf_counter()
        result = getattr(job, stage)()
        if stage == "encode":
            videos = result
        timings[stage] = time.perf_counter() - t0
    return result_of(p, videos, timings)


def result_of(p: Plan, videos: list[str], timings: dict[str, float]) -> dict:
    """What a convert job returns."""
    return {"shot_dir": p.shot_dir, "videos": videos, "timings": timings, "frames": p.count,
            "size": (p.intrinsics.width, p.intrinsics.height)}


def prepare(spec: ConvertSpec, progress: Progress | None, cancel: Callable[[], bool] | None, log,
            chunk: tuple[int, int] | None = None) -> tuple[Plan, tuple[str, ...]]:
    """Plan a job, check it, and ready the shot folder for the stages it runs (returned in order): remove what
    killed runs left half-written, clear the stages whose settings changed and write shot.json.

    With ``chunk`` (a farm's task that does some frames while other tasks do the rest of the same shot), the
    shot folder must already be ready for these settings (a run with ``prepare_only`` did it): a chunk never
    clears a stage, which other chunks may be writing, nor writes shot.json; it refuses instead.
    """
    p = plan(spec, progress, cancel, log)
    stages = tuple(st for st in STAGES if st in (spec.stages or STAGES) and (st != "cloud" or spec.cloud))
    if chunk is not None:
        _check_chunk(p, stages, chunk)
    _Job(p, progress, cancel, log, chunk=chunk).check_stages(stages)
    if os.path.isdir(p.shot_dir):
        # Only the temporaries of writers that no longer run: those of other chunks at work stay.
        for path in remove_stale_temporaries(p.shot_dir):
            log(f"removed '{path}', left half-written by a run that was stopped")
    if chunk is None:
        _prepare_shot(p, stages, log)
    return p, stages


def run_stage(p: Plan, stage: str, progress: Progress | None = None, cancel: Callable[[], bool] | None = None,
              log: Callable[[str], None] | None = None, **part) -> list[str] | None:
    """Run one stage of a planned shot whose folder is ready (:func:`prepare`), or a part of it: ``chunk``,
    ``inpaint_eyes`` or ``streams`` (see :class:`_Job`). What a farm's task runs; returns the videos encode wrote."""
    try:
        return getattr(_Job(p, progress, cancel, log, **part), stage)()
    except OSError as exc:
        raise disk_error(exc) from None


def video_layouts(spec: ConvertSpec) -> list[str]:
    """The layouts encode makes videos of (the others are frames only)."""
    return [layout for layout in spec.layouts if layout not in FRAME_ONLY_LAYOUTS]


def video_streams(spec: ConvertSpec) -> list[str]:
    """The streams encode makes a video of each, in order."""
    return [stream for layout in video_layouts(spec) for stream in stream_names(layout)]


def fills_frame_by_frame(spec: ConvertSpec) -> bool:
    """Whether the inpaint stage may be split by frames: its inpainter fills each frame on its own (telea,
    none). The default one carries each frame's fill to the next, and a model fills chunks of frames
    cross-faded into each other: those fill each eye in order, from its first frame."""
    return spec.inpaint_model is None and isinstance(INPAINTERS[spec.inpaint](None), PerFrame)


def _check_chunk(p: Plan, stages: tuple[str, ...], chunk: tuple[int, int]) -> None:
    """A chunk fits the shot, runs only stages that split by frames, and finds the shot ready for its settings."""
    first, last = chunk
    if not 1 <= first <= last <= p.count:
        raise InputError(f"--chunk {first}:{last} does not fit the shot, which has {p.count} frame"
                         f"{'s' if p.count != 1 else ''}; give A:B with 1 <= A <= B <= {p.count}")
    if "encode" in stages:
        raise InputError("--chunk: the encode stage writes whole videos, so it cannot be split by frames; leave "
                         "it out of the chunks (e.g. --stages ingest,cloud,eyes) and end with the same command "
                         "without --chunk, which encodes and skips what the chunks did")
    if "inpaint" in stages and not fills_frame_by_frame(p.spec):
        how = f"the {p.spec.inpaint_model} model" if p.spec.inpaint_model else f"--inpaint {p.spec.inpaint}"
        raise InputError(f"--chunk: {how} fills each eye frame after frame from its first, so the inpaint "
                         "stage cannot be split by frames; leave it out of the chunks and run it once without "
                         "--chunk (--stages inpaint, or the final command), or use --inpaint telea")
    recorded = (_read_record(os.path.join(p.shot_dir, SHOT_JSON)) or {}).get("stages", {})
    prints = p.fingerprints()
    for stage in stages:
        if recorded.get(stage) != prints[stage]:
            raise InputError(f"--chunk: '{p.shot_dir}' is not prepared for these settings of the '{stage}' "
                             "stage; run the same command once with --prepare instead of --chunk before the "
                             "chunks (a chunk never clears a stage or writes shot.json: other chunks may be "
                             "writing the shot)")
