"""The point cloud cache: cloud.usdc streams frames from cloud/NNNNNN.usdc without opening them all."""

import numpy as np
from pxr import Usd, UsdGeom

from stereoforge.camera import Intrinsics
from stereoforge.cloud import CLOUD_PRIM, cloud_points, frame_clip_path, write_cloud_stage, write_frame_clip


def test_writing_the_top_stage_opens_no_frame_clip_and_the_stage_streams_each_frame(tmp_path):
    k = Intrinsics.from_lens(32, 24)
    frames = 40
    (tmp_path / "cloud").mkdir()
    # Writing cloud.usdc must not open the frames' layers (a long clip would hold them all in memory at
    # once): with frame files that are not USD at all, opening one would fail.
    for n in range(1, frames + 1):
        with open(frame_clip_path(str(tmp_path), n), "wb") as f:
            f.write(b"not USD")
    path = write_cloud_stage(str(tmp_path), frames, 24.0, k)

    for n in range(1, frames + 1):
        depth = np.full((24, 32), 2.0 + n, np.float32)
        write_frame_clip(frame_clip_path(str(tmp_path), n), n, *cloud_points(np.full((24, 32, 3), 0.5, np.float32),
                                                                             depth, k))
    stage = Usd.Stage.Open(path)
    points = UsdGeom.Points(stage.GetPrimAtPath(CLOUD_PRIM)).GetPointsAttr()
    assert (stage.GetStartTimeCode(), stage.GetEndTimeCode()) == (1, frames)
    for n in (1, 17, frames):  # each frame's own depth, 2 + n metres (the cloud looks down -Z, as a camera)
        assert np.allclose(np.asarray(points.Get(n))[:, 2], -(2.0 + n))
