"""``eyes``: both eyes of each frame splatted from its source and depth through the frame's rig,
``eyes/{left,right}/000001.exr`` (RGBA, alpha = coverage, and Z) and the dropout ``masks/{left,right}/000001.png``.
"""

from __future__ import annotations

import numpy as np
import torch

from ..io.images import read_depth_file, read_image, write_exr, write_png
from ..rig import eye_views
from ..shot import EYES, frame_name
from ..splat import EyeImage, splat_eye
from .job import Job


def run(job: Job) -> None:
    """Splat the eyes of each frame of ``job`` not splatted yet, a batch at a time; a batch holds frames of one
    rig (an animated rig splats frame by frame)."""
    k, batch, rigs = job.plan.intrinsics, job.plan.spec.batch, job.plan.rigs
    job.make_dirs("eyes")
    outputs = lambda n: [job.path(kind, eye, frame_name(n, ext)) for eye in EYES
                         for kind, ext in (("eyes", "exr"), ("masks", "png"))]
    images: dict[tuple[str, int], EyeImage] = {}  # splat_eye writes each batch into the last one's
    render = lambda numbers: _render(job, numbers, eye_views(rigs[numbers[0] - 1], k.fx), images)
    pending: list[int] = []
    for n in job.frames_to_do("eyes", outputs):
        if pending and rigs[n - 1] != rigs[pending[0] - 1]:
            render(pending)
            pending = []
        pending.append(n)
        if len(pending) == batch:
            render(pending)
            pending = []
    if pending:
        render(pending)


def _render(job: Job, numbers: list[int], views, images: dict[tuple[str, int], EyeImage]) -> None:
    """Splat and write both eyes of frames ``numbers`` (one rig: ``views``)."""
    k, device = job.plan.intrinsics, job.plan.device
    frames = [(read_image(job.source_frame(n)), read_depth_file(job.depth_frame(n))) for n in numbers]
    color = torch.from_numpy(np.stack([f[0] for f in frames])).permute(0, 3, 1, 2).to(device)
    depth = torch.from_numpy(np.stack([f[1] for f in frames])).to(device)
    for eye in EYES:
        key = (eye, len(numbers))
        image = images[key] = splat_eye(color, depth, k, views[eye], out=images.get(key))
        rgba = image.rgba.permute(0, 2, 3, 1).cpu().numpy()
        eye_depth = image.depth.cpu().numpy()
        dropout = image.dropout.cpu().numpy()
        for j, n in enumerate(numbers):
            channels = {c: rgba[j, ..., i] for i, c in enumerate("RGBA")}
            channels["Z"] = eye_depth[j]
            write_exr(job.path("eyes", eye, frame_name(n, "exr")), channels, half=True)
            write_png(job.path("masks", eye, frame_name(n, "png")), dropout[j].astype(np.uint8) * 255)
