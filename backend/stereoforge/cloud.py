"""Per-frame RGB-D point clouds as USD: one ``UsdGeomPoints`` whose points change every frame.

``cloud.usdc`` is small: it defines ``/Shot/Cloud`` (a Points prim) and ``/Shot/Camera`` (the source camera),
and takes the time samples of the cloud from one file per frame, ``cloud/000001.usdc``..., through USD value
clips (a clip template). Seen through ``cloud.usdc``, the cloud is an ordinary time-sampled UsdGeomPoints:
usdview, Houdini, Maya, Nuke and Blender open it as one streaming point cache. One file a frame keeps memory
flat however long the clip, lets a re-run skip the frames already written, and lets two machines write two
halves of a clip.

Units and axes: metres (``metersPerUnit = 1``), ``upAxis = Y``, points in the source camera's space, which is
both Blender's and USD's camera convention (+X right, +Y up, looking down -Z); ``/Shot/Camera`` sits at the
origin with the source intrinsics. Frame ``n`` of the shot is time code ``n`` (1-based, as the files are named).
Colours (``primvars:displayColor``) are linear RGB; ``widths`` are point diameters in metres: the footprint of a
source pixel at that depth (``depth / focal_px``) times the sampling stride, times ``width_scale``.
"""

from __future__ import annotations

import contextlib
import filecmp
import os
from collections.abc import Iterator

import numpy as np
from pxr import Gf, Sdf, Usd, UsdGeom, Vt

from .camera import FULL_FRAME_SENSOR_MM, Intrinsics
from .io.images import atomic_path, temporary_path

CLOUD_PRIM = "/Shot/Cloud"
CAMERA_PRIM = "/Shot/Camera"
CLIP_FOLDER = "cloud"
MANIFEST = "manifest.usda"
#: Points drawn a little wider than a pixel so neighbouring discs close the gaps between them.
DEFAULT_WIDTH_SCALE = 1.5


def frame_clip_path(shot_dir: str, frame: int) -> str:
    return os.path.join(shot_dir, CLIP_FOLDER, f"{frame:06d}.usdc")


def cloud_points(rgb: np.ndarray, depth: np.ndarray, k: Intrinsics, stride: int = 1,
                 width_scale: float = DEFAULT_WIDTH_SCALE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The points of one RGB-D frame, every ``stride``-th pixel in each direction.

    Args:
        rgb: (H, W, 3) linear RGB.
        depth: (H, W) metric planar depth; NaN (or non-positive) = no point.
        k: intrinsics of the frame.

    Returns:
        ``(points (N, 3), colors (N, 3), widths (N,))`` float32, points in Blender/USD camera space.
    """
    d = depth[::stride, ::stride]
    c = rgb[::stride, ::stride]
    v, u = np.mgrid[0:depth.shape[0]:stride, 0:depth.shape[1]:stride].astype(np.float32) + 0.5
    keep = np.isfinite(d) & (d > 0)
    d, u, v = d[keep], u[keep], v[keep]
    points = np.stack(((u - k.cx) / k.fx * d, -(v - k.cy) / k.fy * d, -d), axis=1).astype(np.float32)
    widths = (d / k.fx * stride * width_scale).astype(np.float32)
    return points, c[keep].astype(np.float32), widths


def write_frame_clip(path: str, frame: int, points: np.ndarray, colors: np.ndarray, widths: np.ndarray) -> None:
    """One frame's points as a USD layer holding time samples at time code ``frame`` (written atomically)."""
    with atomic_path(path) as tmp:
        stage = Usd.Stage.CreateNew(str(tmp))
        UsdGeom.SetStageMetersPerUnit(stage, 1.0)
        UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
        geom = UsdGeom.Points.Define(stage, CLOUD_PRIM)
        geom.CreatePointsAttr().Set(Vt.Vec3fArray.FromNumpy(points), frame)
        geom.CreateWidthsAttr().Set(Vt.FloatArray.FromNumpy(widths), frame)
        geom.SetWidthsInterpolation(UsdGeom.Tokens.vertex)
        color = geom.CreateDisplayColorPrimvar(UsdGeom.Tokens.vertex)
        color.Set(Vt.Vec3fArray.FromNumpy(colors), frame)
        lo, hi = (points.min(axis=0), points.max(axis=0)) if len(points) else (np.zeros(3), np.zeros(3))
        geom.CreateExtentAttr().Set(Vt.Vec3fArray([Gf.Vec3f(*map(float, lo)), Gf.Vec3f(*map(float, hi))]), frame)
        stage.GetRootLayer().Save()


def _define_cloud_attributes(stage: Usd.Stage) -> UsdGeom.Points:
    geom = UsdGeom.Points.Define(stage, CLOUD_PRIM)
    geom.CreatePointsAttr()
    geom.CreateWidthsAttr()
    geom.SetWidthsInterpolation(UsdGeom.Tokens.vertex)
    geom.CreateDisplayColorPrimvar(UsdGeom.Tokens.vertex)
    geom.CreateExtentAttr()
    return geom


@contextlib.contextmanager
def _replace_if_changed(path: str) -> Iterator[str]:
    """Like an atomic write, but an unchanged file is left alone (its time stamp says when it was made)."""
    tmp = str(temporary_path(path))
    try:
        yield tmp
        if os.path.exists(path) and filecmp.cmp(tmp, path, shallow=False):
            os.remove(tmp)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_cloud_stage(shot_dir: str, frame_count: int, fps: float, k: Intrinsics,
                      custom: dict | None = None) -> str:
    """Write ``cloud.usdc`` (and the clips' manifest) that stream frames 1..frame_count from ``cloud/``."""
    manifest_path = os.path.join(shot_dir, CLIP_FOLDER, MANIFEST)
    os.makedirs(os.path.dirname(manifest_path), exist_ok=True)
    with _replace_if_changed(manifest_path) as tmp:
        manifest = Usd.Stage.CreateNew(tmp)
        _define_cloud_attributes(manifest)
        manifest.GetRootLayer().Save()

    path = os.path.join(shot_dir, "cloud.usdc")
    with _replace_if_changed(path) as tmp:
        layer = Sdf.Layer.CreateNew(tmp)
        stage = Usd.Stage.Open(layer)
        UsdGeom.SetStageMetersPerUnit(stage, 1.0)
        UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
        stage.SetStartTimeCode(1)
        stage.SetEndTimeCode(max(1, frame_count))
        stage.SetTimeCodesPerSecond(fps)
        stage.SetFramesPerSecond(fps)
        root = UsdGeom.Xform.Define(stage, "/Shot")
        stage.SetDefaultPrim(root.GetPrim())

        geom = _define_cloud_attributes(stage)
        camera = UsdGeom.Camera.Define(stage, CAMERA_PRIM)
        # USD apertures and focal length are in tenths of a scene unit by convention (i.e. millimetres).
        camera.CreateHorizontalApertureAttr(FULL_FRAME_SENSOR_MM)
        camera.CreateVerticalApertureAttr(FULL_FRAME_SENSOR_MM * k.height / k.width)
        camera.CreateFocalLengthAttr(k.lens_mm)
        camera.CreateProjectionAttr(UsdGeom.Tokens.perspective)
        if custom:
            root.GetPrim().SetCustomDataByKey("stereoforge", custom)
        # The clips last, in the layer, with no stage open on it: authored through a stage, they are
        # composed at once, which opens every frame's clip layer (some 100 kB of memory each).
        del stage, geom, camera, root
        spec = layer.GetPrimAtPath(CLOUD_PRIM)
        spec.SetInfo("clips", {"default": {
            "templateAssetPath": f"./{CLIP_FOLDER}/######.usdc", "templateStartTime": 1.0,
            "templateEndTime": float(max(1, frame_count)), "templateStride": 1.0,
            "primPath": CLOUD_PRIM, "manifestAssetPath": Sdf.AssetPath(f"./{CLIP_FOLDER}/{MANIFEST}")}})
        layer.Save()
    return path
