"""``composite``: the stereo frames of each layout from the filled eyes,
``out/frames/<layout>/<layout>_000001.png`` (``.exr`` for exr-multiview), with the floating window when asked."""

from __future__ import annotations

import contextlib
import dataclasses
import os

import numpy as np

from ..comfort import window_edges
from ..composite import MULTIVIEW_EXR, compose, stream_names, write_multiview_frame
from ..io.images import read_depth_file, read_image, read_mask, srgb_integers_to_linear, write_png
from ..rig import eye_views
from ..shot import EYES
from .inpaint import Fills
from .job import Job
from .writes import Writes


def run(job: Job, fills: Fills | None = None, label: str = "composite") -> None:
    """Compose the frames of ``job`` not composed yet, every layout asked for, writing them on a few threads.
    ``fills``: the filled eyes in memory (the inpaint stage runs in this process; ``label`` names the stages
    run so, for progress), else they are read from filled/."""
    spec = job.plan.spec
    streams = [s for layout in spec.layouts for s in stream_names(layout)]
    job.make_dirs("composite")
    outputs = lambda n: [job.composite_frame(stream, n) for stream in streams] + (fills.outputs(n) if fills else [])
    # With fills, their writes (the checkpoints) and these are one queue: a checkpoint may go once the frames
    # composed before it are on disk.
    with contextlib.nullcontext(fills.writes) if fills is not None else Writes(job.writers) as writes:
        for n in job.frames_to_do(label, outputs):
            if fills is None:
                compose_from_files(job, n, writes)
                continue
            # The codes themselves (the inpainter keeps them: copied before the floating window).
            codes = fills.fill(n)
            _compose(job, n, *(codes[eye].copy() if spec.floating_window else codes[eye] for eye in EYES), fills,
                     writes)
        if fills is not None:
            fills.finish()


def compose_from_files(job: Job, n: int, writes: Writes) -> None:
    """Write frame ``n`` of every layout from the filled eyes in filled/."""
    _compose(job, n, *(read_image(job.filled_frame(eye, n)) for eye in EYES), None, writes)


def _compose(job: Job, n: int, left: np.ndarray, right: np.ndarray, fills: Fills | None, writes: Writes) -> None:
    """Write frame ``n`` of every layout from its filled eyes (linear RGB, or uint8 sRGB codes); exr-multiview
    takes the dropout too, from the eyes in memory when ``fills`` has them."""
    spec, k, rigs = job.plan.spec, job.plan.intrinsics, job.plan.rigs
    # Each eye's own camera (its lens shift follows the frame's rig), for the layouts that reproject.
    eyes = {eye: dataclasses.replace(k, cx=k.cx - view.shift_px)
            for eye, view in eye_views(rigs[n - 1], k.fx).items()}
    if spec.floating_window:
        depth = read_depth_file(job.depth_frame(n))
        on_left, on_right = window_edges(depth, rigs[n - 1], k.fx)
        left[:, :on_left] = 0
        right[:, right.shape[1] - on_right:] = 0
    for layout in spec.layouts:
        if layout == MULTIVIEW_EXR:
            masks = [fills.eyes.eye(eye, n).dropout if fills is not None and fills.eyes is not None else
                     read_mask(job.mask_png(eye, n)) for eye in EYES]
            if not os.path.exists(job.composite_frame(layout, n)):
                linear = [srgb_integers_to_linear(eye) if eye.dtype == np.uint8 else eye for eye in (left, right)]
                writes.submit(write_multiview_frame, job.composite_frame(layout, n), *linear, *masks)
            continue
        for stream, frame in compose(left, right, layout, eyes).items():
            if not os.path.exists(job.composite_frame(stream, n)):  # a frame redone for a kept file it lacked
                writes.submit(write_png, job.composite_frame(stream, n), frame)
