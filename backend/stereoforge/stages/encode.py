"""``encode``: each layout's frames as a video, ``out/video/<shot>_<layout>.mp4`` (``.mov`` for ProRes,
``--container``), with stereo metadata and the source's audio. Encodes the whole shot (``job.chunk`` aside):
a video is one file."""

from __future__ import annotations

import os

import numpy as np

from ..composite import STEREO_METADATA, VR180, stream_names
from ..errors import Cancelled, InputError
from ..io.images import read_image, read_png8
from ..io.video import VideoWriter
from .composite import compose_from_files
from .job import Job
from .writes import Writes


def run(job: Job) -> list[str]:
    """Encode every video not encoded yet (of ``job.streams``, when a farm's task does some); returns their
    paths."""
    plan = job.plan
    job.make_dirs("encode")
    audio = job.audio()
    written = []
    for layout in job.video_layouts():
        for stream in stream_names(layout):
            if job.streams is not None and stream not in job.streams:
                continue
            path = job.video_path(layout, stream)
            written.append(path)
            if os.path.exists(path):
                job.progress(f"encode {stream}", plan.count, plan.count)
                continue
            first = read_image(_frame(job, stream, 1))
            h, w = first.shape[:2]
            with VideoWriter(path, w, h, plan.fps, codec=plan.spec.codec, crf=plan.spec.crf,
                             stereo=STEREO_METADATA.get(layout), audio=audio,
                             projection=VR180 if layout == VR180 else None) as video:
                for n in range(1, plan.count + 1):
                    if job.cancel():
                        raise Cancelled(f"cancelled while encoding '{path}'; the frames are kept in "
                                        f"'{job.path('out', 'frames')}'")
                    video.write(_composite(_frame(job, stream, n)))
                    job.progress(f"encode {stream}", n, plan.count)
    return written


def _frame(job: Job, stream: str, n: int) -> str:
    """Composite frame ``n`` of ``stream``; made here from the filled eyes when ``job.compose`` asks and no other
    task has made it yet, waited for while the composite stage makes it beside this one (:meth:`Job.wait_for`)."""
    path = job.composite_frame(stream, n)
    if job.compose and not os.path.exists(path):
        job.make_dirs("composite")
        with Writes(job.writers) as writes:
            compose_from_files(job, n, writes)
    job.wait_for("encode", path)
    return path


def _composite(path: str) -> np.ndarray:
    """A composite frame's uint8 sRGB codes, as the encoder takes them."""
    image = read_png8(path)
    if image is None:
        raise InputError(f"cannot read composite frame '{path}'; delete it and run again to remake it")
    return image
