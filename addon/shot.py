"""The shot folder, as the add-on reads it (standard library only, no ``bpy``).

The backend writes the shot folder (DESIGN.md): ``shot.json``, ``source/``, ``depth/``, ``cloud.usdc``,
``eyes/``, ``masks/``, ``filled/``, ``out/``. The add-on reads ``shot.json`` (the camera and the resolved rig)
and writes one thing of its own: the eyes that Blender renders, with ``eyes/blender.json`` saying what they
were rendered from, so that a change (another rig, another cloud, more samples) re-renders them and clears
what the backend made from the old ones.
"""

from __future__ import annotations

import json
import os
import shutil

from .shot_contract import ANIMATED_RIG, CLOUD_USD, EYES, SHOT_JSON, STAGE_OUTPUTS, downstream, eye_path

#: Written beside the eyes Blender rendered: the settings they were made with.
BLENDER_EYES_RECORD = "blender.json"
#: What the backend makes from the eyes: stale as soon as the eyes change (the masks, and every later stage's).
DOWNSTREAM_OF_EYES = ("masks",) + tuple(rel for stage in downstream("eyes") for rel in STAGE_OUTPUTS[stage])


def read_shot(shot_dir: str) -> dict:
    """``shot.json`` of a shot folder; raises ValueError with a message the user can act on."""
    path = os.path.join(shot_dir, SHOT_JSON)
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"'{shot_dir}' holds no shot.json yet; run the Load stage first") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read '{path}': {exc}; run the Load stage again") from None
    for key in ("camera", "rig", "frames"):
        if key not in meta:
            raise ValueError(f"'{path}' has no '{key}'; it was written by another tool or an old version, "
                             "run the Load stage again")
    return meta


def rig_frames(meta: dict) -> dict[str, list[float]]:
    """The rig's animated values, one per shot frame (a shot from before per-frame rigs: the one rig)."""
    per_frame = meta.get("rig_frames") or {}
    count = int(meta["frames"])
    return {name: list(per_frame.get(name) or [meta["rig"][name]] * count) for name in ANIMATED_RIG}


def parallax_frames(meta: dict) -> list[list[float]]:
    """``[near %, far %]`` of each shot frame (``[]`` when not recorded)."""
    per_frame = meta.get("parallax_frames") or {}
    return [list(pair) for pair in zip(per_frame.get("near_pct") or [], per_frame.get("far_pct") or [], strict=False)]


def parallax_summary(meta: dict) -> str:
    """The shot's parallax range over its frames, in % of the width, for the panel ("" when not recorded)."""
    per_frame = meta.get("parallax_frames") or {}
    near, far = per_frame.get("near_pct"), per_frame.get("far_pct")
    if not near or not far:
        return ""
    return f"Parallax {min(near):+.2f} % to {max(far):+.2f} % of the width"


def cloud_path(shot_dir: str) -> str:
    return os.path.join(shot_dir, CLOUD_USD)


def eyes_record(meta: dict, render: dict) -> dict:
    """What Blender's eyes depend on: the clouds (the backend's fingerprints of ingest and cloud), the camera,
    the rig and the render settings."""
    stages = meta.get("stages", {})
    return {"ingest": stages.get("ingest"), "cloud": stages.get("cloud"), "camera": meta["camera"],
            "rig": meta["rig"], "rig_frames": rig_frames(meta), "render": render}


def prepare_blender_eyes(shot_dir: str, record: dict) -> bool:
    """Make room for Blender's eyes: keep those on disk only if they were rendered with ``record``.

    Otherwise (other settings, or eyes the backend's splatter made) the eyes and everything made from them
    are removed. Writes the record. Returns True when earlier eyes were kept (a resume).
    """
    path = os.path.join(shot_dir, "eyes", BLENDER_EYES_RECORD)
    previous = None
    try:
        with open(path, encoding="utf-8") as f:
            previous = json.load(f)
    except (OSError, ValueError):
        pass
    keep = previous == json.loads(json.dumps(record))
    if not keep:
        clear_eyes(shot_dir)
    for eye in EYES:
        os.makedirs(os.path.join(shot_dir, "eyes", eye), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
    os.replace(tmp, path)
    return keep


def clear_eyes(shot_dir: str) -> None:
    """Remove the eyes and what the backend made from them (masks, filled eyes, composites, videos)."""
    for rel in ("eyes",) + DOWNSTREAM_OF_EYES:
        target = os.path.join(shot_dir, rel)
        if os.path.isdir(target):
            shutil.rmtree(target)


def has_blender_eyes(shot_dir: str) -> bool:
    return os.path.exists(os.path.join(shot_dir, "eyes", BLENDER_EYES_RECORD))


def missing_frames(shot_dir: str, count: int) -> list[int]:
    """Shot frames (1-based) whose left or right eye is not on disk yet."""
    return [n for n in range(1, count + 1) if not all(os.path.exists(eye_path(shot_dir, e, n)) for e in EYES)]
