"""``composite``: the stereo frames of each layout from the filled eyes,
``out/frames/<layout>/<layout>_000001.png`` (``.exr`` for exr-multiview), with the floating window when asked."""

from __future__ import annotations

import dataclasses

from ..comfort import window_edges
from ..composite import MULTIVIEW_EXR, compose, stream_names, write_multiview_frame
from ..io.images import read_depth_file, read_image, read_mask, write_png
from ..rig import eye_views
from ..shot import EYES, frame_name
from .job import Job


def run(job: Job) -> None:
    """Compose the frames of ``job`` not composed yet, every layout asked for."""
    spec, k, rigs = job.plan.spec, job.plan.intrinsics, job.plan.rigs
    streams = [s for layout in spec.layouts for s in stream_names(layout)]
    job.make_dirs("composite")
    outputs = lambda n: [job.composite_frame(stream, n) for stream in streams]
    for n in job.frames_to_do("composite", outputs):
        # Each eye's own camera (its lens shift follows the frame's rig), for the layouts that reproject.
        eyes = {eye: dataclasses.replace(k, cx=k.cx - view.shift_px)
                for eye, view in eye_views(rigs[n - 1], k.fx).items()}
        left, right = (read_image(job.filled_frame(eye, n)) for eye in EYES)
        if spec.floating_window:
            depth = read_depth_file(job.depth_frame(n))
            on_left, on_right = window_edges(depth, rigs[n - 1], k.fx)
            left[:, :on_left] = 0
            right[:, right.shape[1] - on_right:] = 0
        for layout in spec.layouts:
            if layout == MULTIVIEW_EXR:
                masks = [read_mask(job.path("masks", eye, frame_name(n, "png"))) for eye in EYES]
                write_multiview_frame(job.composite_frame(layout, n), left, right, *masks)
                continue
            for stream, frame in compose(left, right, layout, eyes).items():
                write_png(job.composite_frame(stream, n), frame)
