"""The running job the stages share: where the shot's files are, which frames are left to do, progress,
cancellation and the log.

A stage reads the :class:`Job` (its :attr:`Job.plan` holds the spec and what was worked out from the clip) and
writes its frames under the shot folder; :mod:`stereoforge.shot` names the folders. ``chunk`` narrows a run to
some of the shot's frames, so that several workers (a farm) can each make a part of one shot. The inpainters
read neighbouring frames of the eyes (their temporal window), so the eyes of the whole shot come before an
inpaint chunk; ``encode`` makes whole videos and ignores the chunk.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np

from ..cloud import CLIP_FOLDER
from ..composite import FRAME_ONLY_LAYOUTS, MULTIVIEW_EXR, VR_TAGS, frame_ext, stream_names
from ..errors import Cancelled, InputError
from ..inpaint import ClipReader, EyeFrame
from ..io.images import read_eye, read_mask, read_png8, write_png
from ..io.video import AudioClip, check_audio
from ..plan import Plan, Progress, check_can_write
from ..shot import EYES, UPSTREAM, eye_path, frame_name
from ..spec import video_container
from .writes import WRITERS

#: How often a run that waits for a file, or for the stages it reads to end, looks again, in seconds.
POLL_S = 0.02
#: A pixel covered less than this is dropout (the splatter's default, and the rule for Blender's alpha).
COVERAGE_THRESHOLD = 0.5


def _no_progress(stage: str, done: int, total: int) -> None:
    pass


def _never() -> bool:
    return False


def _quiet(message: str) -> None:
    pass


@dataclass
class Job:
    """One run of some stages on a planned shot."""

    plan: Plan
    #: ``progress(stage, done, total)``, as frames finish (frames already done count too).
    progress: Progress = _no_progress
    #: Polled between frames; when it turns true the stage stops with :class:`Cancelled` (finished frames stay).
    cancel: Callable[[], bool] = _never
    log: Callable[[str], None] = _quiet
    #: The shot frames this run does, 1-based, both ends included; ``None``: all of them.
    chunk: tuple[int, int] | None = None
    #: The eyes the inpaint stage fills (a farm fills each in a task of its own: the default inpainter and a
    #: model fill an eye's frames in order, but the two eyes are independent).
    eyes: tuple[str, ...] = EYES
    #: The streams the encode stage makes videos of (a farm encodes each in a task of its own); ``None``: all.
    streams: tuple[str, ...] | None = None
    #: The encode stage makes the composite frames it finds missing, from filled/ (a farm's encode task starts
    #: while composite tasks still make the later frames, so that the one video's encoding overlaps them).
    compose: bool = False
    #: The threads the run may keep busy: ``None``, as many as help on this machine (files written on
    #: :data:`~stereoforge.stages.writes.WRITERS` threads while the next frame is made, torch's and OpenCV's own
    #: pools); 1 for a farm's task, which its one CPU reserves (files written in line, one-thread libraries).
    threads: int | None = None
    #: Set when the group of stages that writes the files this run reads has ended, where it runs beside this one
    #: (:mod:`stereoforge.stages.overlap`): until then a read waits for its file (:meth:`wait_for`). ``None``:
    #: those files are written (or this run does not make them).
    upstream_ended: threading.Event | None = None

    def __post_init__(self) -> None:
        if self.chunk is not None:
            first, last = self.chunk
            if not 1 <= first <= last <= self.plan.count:
                raise InputError(f"--chunk {first}:{last} does not fit the shot's {self.plan.count} frames; give "
                                 f"A:B with 1 <= A <= B <= {self.plan.count}")

    @property
    def writers(self) -> int:
        """Threads that write the frames' files while the run goes on (0: in line)."""
        return WRITERS if self.threads is None else min(WRITERS, self.threads - 1)

    def limit_threads(self) -> None:
        """Size torch's and OpenCV's thread pools to :attr:`threads`, when it is set (they are the process's)."""
        if self.threads is not None:
            import cv2
            import torch

            torch.set_num_threads(self.threads)
            cv2.setNumThreads(self.threads)

    @property
    def dir(self) -> str:
        """The shot folder."""
        return self.plan.shot_dir

    @property
    def frames(self) -> range:
        """The shot frame numbers (1-based) this run does: the chunk, or the whole shot."""
        first, last = self.chunk or (1, self.plan.count)
        return range(first, last + 1)

    def path(self, *parts: str) -> str:
        return os.path.join(self.dir, *parts)

    # -- checks before anything is written -------------------------------------------------------------------

    def check_stages(self, stages: tuple[str, ...]) -> None:
        """Before anything is cleared or written: each stage to run finds the files its upstream stage made
        (when that one does not run now) and may write its folders."""
        if "encode" in stages and self.audio() is not None:
            check_audio(self.audio(), video_container(self.plan.spec))
        for stage in stages:
            if UPSTREAM.get(stage) not in stages:
                self.require_inputs(stage)
            for folder in self.stage_dirs(stage):
                check_can_write(folder)

    def stage_dirs(self, stage: str) -> list[str]:
        """The folders ``stage`` writes its frames into."""
        streams = [s for layout in self.plan.spec.layouts for s in stream_names(layout)]
        return {
            "ingest": [self.path("source"), self.path("depth")],
            "cloud": [self.path(CLIP_FOLDER)],
            "eyes": [self.path(kind, eye) for kind in ("eyes", "masks") for eye in EYES],
            "inpaint": [self.path("filled", eye) for eye in EYES],
            "composite": [self.path("out", "frames", stream) for stream in streams],
            "encode": [self.path("out", "video")],
        }[stage]

    def make_dirs(self, stage: str) -> None:
        for folder in self.stage_dirs(stage):
            os.makedirs(folder, exist_ok=True)

    def require_inputs(self, stage: str) -> None:
        """Before a stage runs on its own: the files it reads must be there, for the first and last frame it
        does."""
        needs = {
            "cloud": lambda n: [self.source_frame(n), self.depth_frame(n)],
            "eyes": lambda n: [self.source_frame(n), self.depth_frame(n)],
            "inpaint": lambda n: [self.eye_exr(eye, n) for eye in EYES],
            "composite": lambda n: [self.filled_frame(eye, n) for eye in EYES] + (
                [self.mask_png(eye, n) for eye in EYES]
                if MULTIVIEW_EXR in self.plan.spec.layouts else []),
            "encode": lambda n: [self.composite_frame(stream, n) for layout in self.video_layouts()
                                 for stream in stream_names(layout)],
        }.get(stage)
        if needs is None:
            return
        frames = range(1, self.plan.count + 1) if stage == "encode" else self.frames
        for n in sorted({frames[0], frames[-1]}):
            for path in needs(n):
                if not os.path.exists(path):
                    upstream = UPSTREAM[stage]
                    raise InputError(f"'{path}' is missing, so the '{stage}' stage cannot run; run the "
                                     f"'{upstream}' stage first (--stages {upstream},{stage})")

    # -- the frames to do ------------------------------------------------------------------------------------

    def frames_to_do(self, stage: str, outputs: Callable[[int], list[str]]) -> Iterator[int]:
        """Shot frame numbers (1-based, of this run's frames) whose outputs are missing; reports progress for
        the done ones too."""
        total = len(self.frames)
        done = 0
        for n in self.frames:
            self.check_cancel(stage)
            if all(os.path.exists(p) for p in outputs(n)):
                done += 1
                self.progress(stage, done, total)
                continue
            yield n
            done += 1
            self.progress(stage, done, total)

    def wait_for(self, stage: str, *paths: str) -> None:
        """Wait until the files ``paths`` exist, while the stage that writes them runs beside this one
        (:attr:`upstream_ended`); ``stage`` is the one that reads them. Returns at once otherwise."""
        while self.upstream_ended is not None and not all(os.path.exists(p) for p in paths):
            self.check_cancel(stage)
            if self.upstream_ended.is_set():  # it wrote what it writes: one last look
                for path in paths:
                    if not os.path.exists(path):
                        raise InputError(f"'{path}' is missing, so the '{stage}' stage cannot go on; run the "
                                         f"'{UPSTREAM[stage]}' stage again (--stages {UPSTREAM[stage]},{stage})")
            self.upstream_ended.wait(POLL_S)

    def check_cancel(self, stage: str) -> None:
        if self.cancel():
            raise Cancelled(f"cancelled during {stage}; the frames finished so far are kept in '{self.dir}'")

    # -- the shot's files ------------------------------------------------------------------------------------

    def source_frame(self, n: int) -> str:
        return self.path("source", frame_name(n, self.plan.source_ext))

    def depth_frame(self, n: int) -> str:
        return self.path("depth", frame_name(n, "exr"))

    def eye_exr(self, eye: str, n: int) -> str:
        return eye_path(self.dir, eye, n)

    def mask_png(self, eye: str, n: int) -> str:
        return self.path("masks", eye, frame_name(n, "png"))

    def filled_frame(self, eye: str, n: int) -> str:
        return self.path("filled", eye, frame_name(n, "png"))

    def composite_frame(self, stream: str, n: int) -> str:
        return self.path("out", "frames", stream, f"{stream}_{n:06d}.{frame_ext(stream)}")

    def video_layouts(self) -> list[str]:
        """The layouts that become videos (the others are frames only)."""
        return [layout for layout in self.plan.spec.layouts if layout not in FRAME_ONLY_LAYOUTS]

    def video_path(self, layout: str, stream: str) -> str:
        spec = self.plan.spec
        tag = VR_TAGS.get(layout, "") if spec.vr_tags else ""
        return self.path("out", "video", f"{self.plan.name}_{stream}{tag}{video_container(spec)}")

    def audio(self) -> AudioClip | None:
        """A video source's audio, from the time of the first frame taken (--frames)."""
        info = self.plan.source_info
        if info["kind"] != "video":
            return None
        return AudioClip(self.plan.spec.source, (info["first_frame"] - 1) / info["fps"])

    def clip(self, eye: str) -> ClipReader:
        """One eye of the shot as an inpainter reads it: its frames from eyes/ and masks/, and the fills an
        earlier run left in filled/ (the default inpainter and a model's inpaint stage read the same)."""
        return ClipReader(partial(self._eye_frame, eye), partial(self._filled, eye))

    def _eye_frame(self, eye: str, n: int) -> EyeFrame | None:
        """Frame ``n`` of ``eye`` for an inpainter, None past either end of the clip."""
        if not 1 <= n <= self.plan.count:
            return None
        rgb, alpha, depth = read_eye(self.eye_exr(eye, n))
        mask_path = self.mask_png(eye, n)
        if os.path.exists(mask_path):
            dropout = read_mask(mask_path)
        else:  # eyes from another renderer (Blender): dropout is where coverage stayed under half
            dropout = alpha < COVERAGE_THRESHOLD
            os.makedirs(os.path.dirname(mask_path), exist_ok=True)
            write_png(mask_path, dropout.astype(np.uint8) * 255)
        return EyeFrame(rgb, alpha, depth, dropout)

    def _filled(self, eye: str, n: int) -> np.ndarray | None:
        """Frame ``n`` of ``eye`` as filled by an earlier run (uint8 sRGB), or None."""
        # Unreadable: that frame is filled again, not resumed from.
        return read_png8(self.filled_frame(eye, n)) if 1 <= n <= self.plan.count else None
