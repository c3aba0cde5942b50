"""``ingest``: the clip's frames and its depth in metres into the shot, ``source/000001.png`` (``.exr`` for a
float source) and ``depth/000001.exr``."""

from __future__ import annotations

import os

import numpy as np

from ..depth import sharpen_edges
from ..io.images import storable_half, to_uint8_srgb, write_exr, write_png
from ..plan import open_inputs
from .job import Job
from .writes import Writes


def run(job: Job) -> None:
    """Write the frames of ``job`` not written yet: each source frame, and its depth converted to metres."""
    plan = job.plan
    job.make_dirs("ingest")
    todo = {n for n in job.frames if not (os.path.exists(job.source_frame(n)) and os.path.exists(job.depth_frame(n)))}
    total = len(job.frames)
    done = total - len(todo)
    job.progress("ingest", done, total)
    if not todo:
        return
    source, depth = open_inputs(plan.spec)
    last = max(todo)
    # Reading starts at the first frame to write (a video seeks to a keyframe before it); later ones written pass.
    # The files are written on other threads while the next frame is decoded; depth uncompressed (read back
    # by the next stages, it is written twice as fast so).
    with Writes(job.writers) as writes:
        for (i, rgb), (_, raw) in zip(source.frames(min(todo) - 1), depth.frames(min(todo) - 1), strict=True):
            n = i + 1
            if n not in todo:
                continue
            job.check_cancel("ingest")
            if plan.source_ext == "exr":
                rgb = storable_half(rgb)
                writes.submit(write_exr, job.source_frame(n), {c: rgb[..., j] for j, c in enumerate("RGB")}, True)
            else:
                writes.submit(write_png, job.source_frame(n), to_uint8_srgb(rgb))
            metric = sharpen_edges(plan.converter(raw, i), plan.spec.depth_edge_radius)
            writes.submit(write_exr, job.depth_frame(n), {"Z": np.nan_to_num(metric, nan=np.inf)}, False, None, False)
            done += 1
            job.progress("ingest", done, total)
            if n == last:
                break
