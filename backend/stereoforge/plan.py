"""The plan of a convert job: a spec with everything worked out from the clip before anything is written.

:func:`plan` checks every input (paths, the output folder, each depth frame, each source frame, the device)
and resolves the camera (lens, field of view or focal length), the rig of every frame (interocular and
convergence, their curves, a parallax budget, the comfort limits) and the clip's depth range. The stages
(:mod:`stereoforge.stages`) then read the :class:`Plan` and nothing else of the spec's inputs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .camera import DEFAULT_LENS_MM, Intrinsics
from .comfort import far_limit_px
from .curve import parse_curve, sample
from .depth import DepthConverter, DepthStats, observe
from .errors import InputError
from .io.frames import DepthSource, OutsideSource, Source, open_depth, open_source
from .models.loading import resolve_device
from .rig import DEFAULT_INTEROCULAR, StereoRig, harmonic_middle, interocular_for_budget, parallax_px
from .shot import JOB_INPUTS, SHOT_JSON, STAGES, UPSTREAM
from .spec import DEFAULT_FPS, ConvertSpec

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
    """The inputs exist, the output folder is new, empty or a shot folder, outside the inputs, and may be
    written."""
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
    check_can_write(out)
    record = os.path.join(out, SHOT_JSON)
    if os.path.lexists(record) and not os.path.isfile(record):
        raise InputError(f"'{record}' is not a file: a shot folder's record must be; move it away and run again")


def check_can_write(folder: str) -> None:
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
    device = resolve_device(spec.device)

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
