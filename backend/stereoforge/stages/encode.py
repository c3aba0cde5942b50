"""``encode``: each layout's frames as a video, ``out/video/<shot>_<layout>.mp4`` (``.mov`` for ProRes,
``--container``), with stereo metadata and the source's audio. Encodes the whole shot (``job.chunk`` aside):
a video is one file."""

from __future__ import annotations

import os
import time

import numpy as np

from ..composite import STEREO_METADATA, VR180, stream_names
from ..errors import Cancelled, InputError
from ..io.images import read_image, read_png8
from ..io.video import VideoWriter
from .composite import compose_from_files
from .job import POLL_S, Job
from .writes import Writes

#: How long an encode run that makes the composite frames it finds missing (``Job.compose``) waits for the next
#: frame right after one a composite task made, before it makes it itself: until it has timed its own making of
#: a frame, then :data:`PATIENCE` times that.
FIRST_PATIENCE_S = 0.25
PATIENCE = 2.0
#: The frames past the one awaited that the task making it may reach while this run makes another one: the last
#: frames are made here only beyond them.
_AHEAD = 2


def run(job: Job) -> list[str]:
    """Encode every video not encoded yet (of ``job.streams``, when a farm's task does some); returns their
    paths."""
    plan = job.plan
    job.make_dirs("encode")
    audio = job.audio()
    frames = _CompositeFrames(job)
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
            first = read_image(frames.path(stream, 1))
            h, w = first.shape[:2]
            with VideoWriter(path, w, h, plan.fps, codec=plan.spec.codec, crf=plan.spec.crf,
                             stereo=STEREO_METADATA.get(layout), audio=audio,
                             projection=VR180 if layout == VR180 else None) as video:
                for n in range(1, plan.count + 1):
                    if job.cancel():
                        raise Cancelled(f"cancelled while encoding '{path}'; the frames are kept in "
                                        f"'{job.path('out', 'frames')}'")
                    video.write(_composite(frames.path(stream, n)))
                    job.progress(f"encode {stream}", n, plan.count)
    return written


class _CompositeFrames:
    """Where the encoder finds each composite frame: waited for while the composite stage makes it beside this
    run (:meth:`Job.wait_for`), or, with ``job.compose`` (a farm's encode task, which starts while composite
    tasks still make the later frames), made here from the filled eyes when no other task has made it.

    Right after a frame that another task made, a missing frame is likely the one that task is composing now:
    it is waited for a little (:data:`PATIENCE` times this run's own time to make one) before it is made here.
    Otherwise this run, which encodes as well, would keep catching up with that task and compose each later
    frame twice, step for step with it. While it waits, it makes the shot's last frames not made yet, from the
    end down (the task going forward reaches them last, and finds them made): the two meet, and the video's
    last frame comes sooner."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.others_made_last = False
        self.made_last = 0
        self.patience = FIRST_PATIENCE_S
        self.taken_down_to = job.plan.count + 1  # the frames from here on were made here while waiting

    def path(self, stream: str, n: int) -> str:
        """Composite frame ``n`` of ``stream``, once it is there."""
        job, path = self.job, self.job.composite_frame(stream, n)
        if job.compose:
            if os.path.exists(path):
                self.others_made_last = n != self.made_last
            else:
                self.others_made_last = self.others_made_last and self._appears(stream, n)
                if not self.others_made_last:
                    self._make(n)
        job.wait_for("encode", path)
        return path

    def _appears(self, stream: str, n: int) -> bool:
        """Whether frame ``n`` of ``stream`` is made by another task within :attr:`patience` seconds of this run's
        waiting (the time it spends making the last frames meanwhile not counted)."""
        path = self.job.composite_frame(stream, n)
        deadline = time.perf_counter() + self.patience
        while not os.path.exists(path):
            self.job.check_cancel("encode")
            spare = self._last_missing(stream, n)
            if spare is not None:
                self._make(spare)
                deadline = time.perf_counter() + self.patience
            elif time.perf_counter() > deadline:
                return False
            else:
                time.sleep(POLL_S)
        return True

    def _last_missing(self, stream: str, n: int) -> int | None:
        """The shot's last frame of ``stream`` not made yet, if it lies well past frame ``n`` (the one another
        task is likely making: it goes on to the next ones while this run makes one)."""
        while self.taken_down_to - 1 > n + _AHEAD:
            self.taken_down_to -= 1
            if not os.path.exists(self.job.composite_frame(stream, self.taken_down_to)):
                return self.taken_down_to
        return None

    def _make(self, n: int) -> None:
        """Compose frame ``n`` of every layout here, from filled/, and time it."""
        started = time.perf_counter()
        self.job.make_dirs("composite")
        with Writes(self.job.writers) as writes:
            compose_from_files(self.job, n, writes)
        self.made_last = n
        self.patience = PATIENCE * (time.perf_counter() - started)


def _composite(path: str) -> np.ndarray:
    """A composite frame's uint8 sRGB codes, as the encoder takes them."""
    image = read_png8(path)
    if image is None:
        raise InputError(f"cannot read composite frame '{path}'; delete it and run again to remake it")
    return image
