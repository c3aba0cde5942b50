"""A shot folder's record, ``shot.json``: what was asked, what the plan worked out, and each stage's settings.

:func:`prepare_shot` writes it before the stages run, after clearing the files of every stage to run whose
settings changed since the last run (each stage's settings are fingerprinted by :meth:`Plan.fingerprints`).
Blender reads its camera, rig and per-frame rig values from it; a resumed job reads the fingerprints back.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
import torch

from . import __version__
from .io.images import atomic_path
from .models.loading import versions as model_versions
from .plan import Plan
from .rig import parallax_px
from .shot import ANIMATED_RIG, SHOT_JSON, STAGE_OUTPUTS


def _versions() -> dict:
    """The versions of the libraries that shape a shot's files."""
    import av
    import pxr

    return {"stereoforge": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "av": av.__version__, "usd": ".".join(map(str, pxr.Usd.GetVersion())) if hasattr(pxr, "Usd") else None}


def prepare_shot(plan: Plan, stages: tuple[str, ...], log) -> None:
    """Create the shot folder, clear the stages to run whose settings changed, and write shot.json.

    Stages not run now keep their files and their recorded settings: another tool (Blender rendering the
    eyes) may have made them.
    """
    meta_path = os.path.join(plan.shot_dir, SHOT_JSON)
    prints = plan.fingerprints()
    previous_meta = read_record(meta_path)
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
        **rig_frames(plan),
        "depth_range_m": list(plan.depth_range),
        **_parallax_report(plan),
        "stages": {**previous, **{stage: prints[stage] for stage in stages}},
        "versions": _versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if plan.models or "models" in previous_meta:
        meta["models"] = {**previous_meta.get("models", {}), "depth": None, **plan.models}
        meta["versions"].update(model_versions())
    # What other tools recorded here (generate's prompt, seed and video model) stays.
    meta = {**{key: value for key, value in previous_meta.items() if key not in meta}, **meta}
    with atomic_path(meta_path) as tmp, open(tmp, "w") as f:
        json.dump(meta, f, indent=2, default=str)


def rig_frames(plan: Plan) -> dict:
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


def read_record(path: str) -> dict | None:
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
