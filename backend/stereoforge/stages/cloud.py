"""``cloud``: each frame as an RGB-D point cloud in USD (``cloud/000001.usdc`` ...) and the shot's top-level
stage ``cloud.usdc`` that plays them in order, with the rig and the frame rate (Blender imports it)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from ..cloud import cloud_points, frame_clip_path, write_cloud_stage, write_frame_clip
from ..errors import InputError
from ..io.images import read_depth_file, read_image
from ..shot import CLOUD_USD
from ..shot_record import rig_frames
from .job import Job


def run(job: Job) -> None:
    """Write the point cloud of each frame of ``job`` not written yet, then the top-level stage."""
    plan = job.plan
    k = plan.intrinsics
    job.make_dirs("cloud")
    for n in job.frames_to_do("cloud", lambda n: [frame_clip_path(job.dir, n)]):
        job.wait_for("cloud", job.source_frame(n), job.depth_frame(n))
        rgb, depth = read_image(job.source_frame(n)), read_depth_file(job.depth_frame(n))
        points, colors, widths = cloud_points(rgb, depth, k, stride=plan.spec.cloud_stride)
        with _usd_writing(frame_clip_path(job.dir, n)):
            write_frame_clip(frame_clip_path(job.dir, n), n, points, colors, widths)
    # The top-level stage is tiny and records the rig and the frame rate: made on every run (and replaced
    # when it differs), so it never goes stale when only those change.
    with _usd_writing(job.path(CLOUD_USD)):
        write_cloud_stage(job.dir, plan.count, plan.fps, k,
                          custom={"rig": plan.rig.to_dict(), "focal_px": k.fx, "width": k.width,
                                  "height": k.height, **rig_frames(plan)})


@contextlib.contextmanager
def _usd_writing(path: str) -> Iterator[None]:
    """USD reports a failed write (a full disk, a folder that may not be written) as its own exception."""
    from pxr import Tf

    try:
        yield
    except Tf.ErrorException as exc:
        reason = (re.findall(r" : '(.*?)'", str(exc)) or [" ".join(str(exc).split())])[0]
        raise InputError(f"cannot write '{path}': USD says: {reason}; check that the disk has space and the "
                         "folder may be written, then run the same command again to resume") from None
