"""``eyes``: both eyes of each frame splatted from its source and depth through the frame's rig,
``eyes/{left,right}/000001.exr`` (RGBA, alpha = coverage, and Z) and the dropout ``masks/{left,right}/000001.png``.

:class:`EyeFrames` makes them in memory, as the inpainters read them: the inpaint stage takes its frames from it
when it runs in the same process, and the files are written only where asked (``--keep``); :func:`run` writes
them all, for a later run (or the add-on, or a farm's next task) to read.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import torch

from ..inpaint import ClipReader, EyeFrame
from ..io.images import eye_from_channels, read_depth_file, read_image, write_exr, write_png
from ..rig import eye_views
from ..splat import EyeImage, splat_eye
from .job import Job
from .writes import Writes


def run(job: Job) -> None:
    """Splat and write the eyes and masks of each frame of ``job`` not written yet, a batch at a time (a batch
    holds frames of one rig: an animated rig splats frame by frame)."""
    job.make_dirs("eyes")
    with EyeFrames(job, write=("eyes", "masks")) as frames:
        for n in job.frames_to_do("eyes", frames.outputs):
            frames.eye(job.eyes[0], n)  # splats (and writes) the batch from n on, unless an earlier one held it
            frames.forget_before(n + 1)


class EyeFrames:
    """The job's eyes (both, unless a farm's task does one) of the shot's frames, as
    :class:`~stereoforge.inpaint.EyeFrame` (what reading eyes/ and masks/ gives, to the bit): read from the files
    where a frame has them all (Blender's eyes, or an earlier run's), else splatted a batch at a time and held
    until :meth:`forget_before`. The splatted frames' files are written
    on a few threads where ``write`` names their folders ("eyes", "masks"); leaving the context waits for them.
    Each eye's inpainter may read from its own thread."""

    def __init__(self, job: Job, write: tuple[str, ...] = ()):
        self.job = job
        self.writes = Writes(job.writers)
        self.write = write
        self._held: dict[int, dict[str, EyeFrame]] = {}
        self._images: dict[tuple[str, int], EyeImage] = {}  # splat_eye writes each batch into the last one's
        self._lock = threading.Lock()

    def outputs(self, n: int, kinds: tuple[str, ...] = ("eyes", "masks")) -> list[str]:
        """The files of frame ``n`` in eyes/ and masks/ (those of ``kinds``), of the job's eyes."""
        return [path for eye in self.job.eyes for kind, path in (("eyes", self.job.eye_exr(eye, n)),
                                                          ("masks", self.job.mask_png(eye, n))) if kind in kinds]

    def kept_outputs(self, n: int) -> list[str]:
        """The files of frame ``n`` that ``write`` asks for."""
        return self.outputs(n, self.write)

    def clip(self, eye: str) -> ClipReader:
        """One eye as an inpainter reads it: these frames, and the fills an earlier run left in filled/."""
        return ClipReader(lambda n: self.eye(eye, n), self.job.clip(eye).filled)

    def eye(self, eye: str, n: int) -> EyeFrame | None:
        """Frame ``n`` of ``eye``; None past either end of the clip."""
        if not 1 <= n <= self.job.plan.count:
            return None
        with self._lock:
            if n not in self._held:
                if all(os.path.exists(p) for p in self.outputs(n)):
                    self._held[n] = {e: self.job.clip(e).eye(n) for e in self.job.eyes}
                else:
                    self._splat(self._batch(n))
            return self._held[n][eye]

    def forget_before(self, n: int) -> None:
        """Let go of the frames before ``n``."""
        with self._lock:
            for m in [m for m in self._held if m < n]:
                del self._held[m]

    def _batch(self, n: int) -> list[int]:
        """Frame ``n`` and the frames after it to splat with it: of its rig, not held, not on disk, and within
        the run's frames when ``n`` is (a farm's chunk splats no frame of another)."""
        rigs, numbers = self.job.plan.rigs, [n]
        last = self.job.frames[-1] if n in self.job.frames else self.job.plan.count
        for m in range(n + 1, min(n + self.job.plan.spec.batch, last + 1)):
            if m in self._held or rigs[m - 1] != rigs[n - 1] or all(os.path.exists(p) for p in self.outputs(m)):
                break
            numbers.append(m)
        return numbers

    def _splat(self, numbers: list[int]) -> None:
        """Splat both eyes of frames ``numbers`` (one rig) and hold them, as their files would give them."""
        job = self.job
        k, device = job.plan.intrinsics, job.plan.device
        views = eye_views(job.plan.rigs[numbers[0] - 1], k.fx)
        job.wait_for("eyes", *(path for n in numbers for path in (job.source_frame(n), job.depth_frame(n))))
        frames = [(read_image(job.source_frame(n)), read_depth_file(job.depth_frame(n))) for n in numbers]
        color = torch.from_numpy(np.stack([f[0] for f in frames])).permute(0, 3, 1, 2).to(device)
        depth = torch.from_numpy(np.stack([f[1] for f in frames])).to(device)
        for n in numbers:
            self._held[n] = {}
        for eye in job.eyes:
            key = (eye, len(numbers))
            image = self._images[key] = splat_eye(color, depth, k, views[eye], out=self._images.get(key))
            rgba = image.rgba.permute(0, 2, 3, 1).cpu().numpy()
            eye_depth = image.depth.cpu().numpy()
            dropout = image.dropout.cpu().numpy()
            for j, n in enumerate(numbers):
                # Half floats, as the EXR holds them: the frame is what reading the file back gives.
                channels = {c: rgba[j, ..., i].astype(np.float16) for i, c in enumerate("RGBA")}
                channels["Z"] = eye_depth[j].astype(np.float16)
                path = job.eye_exr(eye, n)
                self._held[n][eye] = EyeFrame(*eye_from_channels(channels, path), dropout[j].copy())
                self._write(n, eye, channels, self._held[n][eye].dropout)

    def _write(self, n: int, eye: str, channels: dict[str, np.ndarray], dropout: np.ndarray) -> None:
        """Write the files of frame ``n`` of ``eye`` that ``write`` asks for and that are not there yet: the eye,
        then its mask (in that order, as one task: a disk that fills up stops at the eye)."""
        exr, mask = self.job.eye_exr(eye, n), self.job.mask_png(eye, n)
        write_eye = "eyes" in self.write and not os.path.exists(exr)
        write_mask = "masks" in self.write and not os.path.exists(mask)

        def write() -> None:
            if write_eye:
                write_exr(exr, channels, half=True, compress=False)
            if write_mask:
                write_png(mask, dropout.astype(np.uint8) * 255)

        if write_eye or write_mask:
            self.writes.submit(write)

    def __enter__(self) -> EyeFrames:
        return self

    def __exit__(self, *exc) -> None:
        self.writes.__exit__(*exc)
