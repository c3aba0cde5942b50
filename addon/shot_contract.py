"""The shot folder's contract: its layout, frame names, eyes, stages, and the states and exit codes a job ends
with. Standard library only: the Blender add-on carries this very file (``addon/shot_contract.py``, copied by
``stereoforge addon build``; tests/test_shot_contract.py checks the copies are the same).

A shot folder holds ``shot.json`` and what each stage writes (:data:`STAGE_OUTPUTS`); frames are numbered from
1 in every folder and named by :func:`frame_name`.
"""

from __future__ import annotations

import os

SHOT_JSON = "shot.json"
#: The two views of a stereo shot, as the folders under eyes/, masks/ and filled/ are named.
EYES = ("left", "right")
#: The convert pipeline's stages, in the order they run.
STAGES = ("ingest", "cloud", "eyes", "inpaint", "composite", "encode")
#: The stage each stage's files are made from: remade when it is.
UPSTREAM = {"cloud": "ingest", "eyes": "ingest", "inpaint": "eyes", "composite": "inpaint", "encode": "composite"}
CLOUD_USD = "cloud.usdc"
#: What each stage writes, relative to the shot folder: cleared when the stage's settings change.
STAGE_OUTPUTS = {
    "ingest": ("source", "depth"),
    "cloud": ("cloud", CLOUD_USD),
    "eyes": ("eyes", "masks"),
    "inpaint": ("filled",),
    "composite": (os.path.join("out", "frames"),),
    "encode": (os.path.join("out", "video"),),
}
#: The intermediates a run writes only when asked (``--keep``) or when a stage that reads them does not run in
#: the same process (a later run, the add-on, a farm's next task reads them from the folder): folder -> the
#: stages that read it. Within one process the frames are handed over in memory.
INTERMEDIATES = {"eyes": ("inpaint",), "masks": ("inpaint", "composite"), "filled": ("composite",)}
#: Where a shot keeps its generated mono frames, and a depth model's raw output: inputs a job makes itself.
GENERATED = "generated"
ESTIMATED_DEPTH = "estimated_depth"
JOB_INPUTS = (GENERATED, ESTIMATED_DEPTH)
#: The rig values that may change from frame to frame (``shot.json``'s ``rig_frames``: one value per frame).
ANIMATED_RIG = ("interocular_distance", "convergence_distance")

#: A job's states on the job server, and those it ends in.
JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
ENDED = ("succeeded", "failed", "cancelled")
#: ``stereoforge``'s exit statuses: bad input (one line says which), a failure, cancelled or interrupted.
EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
EXIT_CANCELLED = 130


def frame_name(n: int, ext: str) -> str:
    """File name of shot frame ``n`` (1-based)."""
    return f"{n:06d}.{ext}"


def eye_path(shot_dir: str, eye: str, n: int) -> str:
    """Frame ``n`` of ``eye`` as rendered (linear RGBA with depth, EXR)."""
    return os.path.join(shot_dir, "eyes", eye, frame_name(n, "exr"))


def downstream(stage: str) -> tuple[str, ...]:
    """The stages made from ``stage``'s files, directly or not."""
    below = tuple(st for st, up in UPSTREAM.items() if up == stage)
    return below + tuple(st for b in below for st in downstream(b))
