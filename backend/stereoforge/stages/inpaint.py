"""``inpaint``: each eye's dropout filled, ``filled/{left,right}/000001.png``, by one of the weight-free
inpainters (:mod:`stereoforge.inpaint`) or, with ``--inpaint-model``, a diffusers model
(:mod:`stereoforge.models.inpaint`).

:class:`Fills` fills both eyes frame by frame in memory: the composite stage takes its frames from it when it
runs in the same process, and filled/ is written only when asked (``--keep filled``), or every
:data:`CHECKPOINT_EVERY` frames as the point a stopped run resumes from. :func:`run` writes every frame.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

import numpy as np

from ..inpaint import INPAINTERS, PerFrame
from ..io.images import write_png
from .eyes import EyeFrames
from .job import Job
from .writes import Writes

#: A filled frame is read back soon (by composite, or by a resumed run): stored, not deflated.
_write_fill = partial(write_png, fast=True)

#: Without ``--keep filled``, the fills of every this many frames are written (and the one before the last
#: removed) for a stopped run to resume from: each frame's fill carries on from the one before, so a resumed
#: run fills again, without writing, the frames from the last of these to the first it must make.
CHECKPOINT_EVERY = 24


def run(job: Job, eyes: EyeFrames | None = None) -> None:
    """Fill and write the frames of ``job`` not filled yet, in its eyes (both, unless a farm's task does one).
    ``eyes``: the eyes in memory (the eyes stage runs in this process and writes no files), else they are read
    from eyes/."""
    if job.plan.spec.inpaint_model is not None:
        from ..models.inpaint import inpaint_stage

        return inpaint_stage(job)
    job.make_dirs("inpaint")
    with Writes(job.writers) as writes, Fills(job, writes, eyes, keep=True) as fills:
        for n in job.frames_to_do("inpaint", lambda n: [job.filled_frame(eye, n) for eye in job.eyes]):
            fills.fill(n)


class Fills:
    """Both eyes of the shot's frames filled, one inpainter per eye (:data:`stereoforge.inpaint.INPAINTERS`,
    ``--inpaint``), each on its own thread (OpenCV and numpy's array work release the GIL), frame by frame, so
    that a cancel between frames leaves no eye behind the other.

    ``keep``: write every fill into filled/; the inpainters resume from the fill of the frame before, read back
    from there. Otherwise only checkpoints are written (:data:`CHECKPOINT_EVERY`), and a run that starts after
    the first frame (a resume) or skips frames fills again the frames from the last checkpoint before: its fills
    are those of a run that never stopped. An inpainter that fills each frame on its own (telea, none:
    :class:`~stereoforge.inpaint.PerFrame`) needs neither: it fills the frames asked for and no others.
    ``eyes``: where the inpainters read the eyes (else eyes/ and masks/).
    """

    def __init__(self, job: Job, writes: Writes, eyes: EyeFrames | None, keep: bool):
        self.job, self.writes, self.eyes, self.keep = job, writes, eyes, keep
        make = INPAINTERS[job.plan.spec.inpaint]
        # Each inpainter reads its window of frames (whether or not they are filled yet) and, when resuming, the
        # fill of the frame before the first one it makes from filled/.
        self._inpainters = {eye: make(eyes.clip(eye) if eyes else job.clip(eye)) for eye in self.job.eyes}
        # One thread per eye: its inpainter fills its frames one after the other, in the order asked; in line
        # in a job of one thread (a farm's task).
        self._threads = {eye: ThreadPoolExecutor(1, thread_name_prefix=f"stereoforge-inpaint-{eye}")
                         if job.threads is None or job.threads > 1 else _InLine() for eye in self.job.eyes}
        #: Each frame's fill depends on no other fill: no frame is filled again, no checkpoint written.
        self._frame_by_frame = all(isinstance(inpainter, PerFrame) for inpainter in self._inpainters.values())
        #: How far ahead of the frame it fills an inpainter looks (its window's radius).
        self._window = getattr(self._inpainters[self.job.eyes[0]], "radius", 0)
        self._next: int | None = None  # the frame the inpainters carry on with
        self._ahead: dict[int, dict[str, Future]] = {}  # the frame begun before it was asked for

    def outputs(self, n: int) -> list[str]:
        """The files of frame ``n`` that this run keeps (in filled/, eyes/ and masks/), which must be there for
        the frame to be done."""
        kept = [self.job.filled_frame(eye, n) for eye in self.job.eyes] if self.keep else []
        return kept + (self.eyes.kept_outputs(n) if self.eyes is not None else [])

    def fill(self, n: int) -> dict[str, np.ndarray]:
        """Frame ``n`` of each eye, filled (uint8 sRGB (H, W, 3)); written to filled/ when kept."""
        if not self.keep:
            for m in range(self._first_to_refill(n), n):
                self._fill(m)
        codes = self._fill(n)
        checkpoint = not self.keep and not self._frame_by_frame and n % CHECKPOINT_EVERY == 0
        if self.keep or checkpoint:
            for eye in self.job.eyes:
                if not os.path.exists(self.job.filled_frame(eye, n)):
                    self.writes.submit(_write_fill, self.job.filled_frame(eye, n), codes[eye])
        if checkpoint:
            self._checkpoint(n)
        return codes

    def finish(self) -> None:
        """After the run's last frame: when that is the shot's, the checkpoints of a run that keeps no fills go."""
        if self.keep or self.job.frames[-1] != self.job.plan.count:
            return
        self.writes.wait()
        for n in self._checkpoints_on_disk():
            self._remove_checkpoint(n)

    def _fill(self, n: int) -> dict[str, np.ndarray]:
        """Frame ``n`` of both eyes; then frame ``n + 1`` is begun, so that the inpainters work on while the
        caller composes frame ``n`` (each inpainter still fills its frames one after the other, in order)."""
        futures = self._ahead.pop(n, None) or self._begin(n)
        codes = {eye: future.result() for eye, future in futures.items()}
        self._next = n + 1
        if self.eyes is not None:  # frame n stays: the composite stage reads its dropout (exr-multiview)
            self.eyes.forget_before(n)
        if n + 1 <= self.job.frames[-1]:
            self._ahead = {n + 1: self._begin(n + 1)}
            if self.eyes is not None:  # the newest frame that filling n + 1 reads, splatted here meanwhile
                self.eyes.eye(self.job.eyes[0], min(n + 1 + self._window, self.job.plan.count))
        return codes

    def _begin(self, n: int) -> dict[str, Future]:
        return {eye: self._threads[eye].submit(self._inpainters[eye].fill, n) for eye in self.job.eyes}

    def _first_to_refill(self, n: int) -> int:
        """The first frame to fill again before frame ``n``: the inpainters go on from the last frame they
        filled, or from a checkpoint on disk (the frame before ``n``, or the last one before it), or from the
        shot's start; ``n`` itself for an inpainter that fills each frame on its own."""
        if self._frame_by_frame:
            return n
        if self._next is not None and self._next <= n:
            return self._next
        for m in range(n - 1, 0, -1):
            if all(os.path.exists(self.job.filled_frame(eye, m)) for eye in self.job.eyes):
                return m + 1
        return 1

    def _checkpoint(self, n: int) -> None:
        """Checkpoint ``n`` is being written: once the frames before it are on disk, a resume starts at ``n``
        or later and needs no checkpoint before the one before ``n``: those go."""
        old = [m for m in self._checkpoints_on_disk() if m < n - CHECKPOINT_EVERY]
        if old:
            self.writes.wait()
            for m in old:
                self._remove_checkpoint(m)

    def _checkpoints_on_disk(self) -> list[int]:
        """The frames in filled/ (this run's checkpoints and a stopped run's), when it holds checkpoints only
        (an earlier run's kept fills stay)."""
        on_disk = {int(name.split(".")[0]) for eye in self.job.eyes
                   if os.path.isdir(folder := self.job.path("filled", eye))
                   for name in os.listdir(folder) if name.split(".")[0].isdigit()}
        return sorted(on_disk) if all(n % CHECKPOINT_EVERY == 0 for n in on_disk) else []

    def _remove_checkpoint(self, n: int) -> None:
        for eye in self.job.eyes:
            path = self.job.filled_frame(eye, n)
            if os.path.exists(path):
                os.remove(path)
        for eye in self.job.eyes:  # filled/ itself goes when it holds nothing more
            folder = os.path.dirname(self.job.filled_frame(eye, n))
            if os.path.isdir(folder) and not os.listdir(folder):
                os.rmdir(folder)
        folder = os.path.dirname(os.path.dirname(self.job.filled_frame(self.job.eyes[0], n)))
        if os.path.isdir(folder) and not os.listdir(folder):
            os.rmdir(folder)

    def __enter__(self) -> Fills:
        return self

    def __exit__(self, *exc) -> None:
        for thread in self._threads.values():
            thread.shutdown(wait=True)


class _InLine:
    """An executor that runs each call at once, on the caller's thread."""

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - raised again by future.result(), as a thread's would be
            future.set_exception(exc)
        return future

    def shutdown(self, wait: bool = True) -> None:
        pass
