"""Make the embedded demo clip: render the 'demo' scene with Blender and store it in the backend package.

Run with a Python that has ``bpy`` 4.5 and the backend's dependencies (the project's virtualenv)::

    python tools/make_demo.py

It renders ``tools/blender_truth.py``'s 'demo' scene (480x270, 36 frames at 24 fps, centre view only) into a
temporary folder and writes ``backend/stereoforge/data/demo/``:

    plate.mp4           the centre view, H.264 (libx264, yuv420p, crf 12, BT.709 tags), 24 fps
    depth/000001.exr    planar depth in metres, channel ``Z``, stored as half floats (ZIP), +inf for no hit
    demo.json           camera and clip facts (focal_px, fps, near/far, ...) and a description of the scene

Half floats keep 11 significant bits: the relative depth error is at most 2^-11 (about 4.9e-4); the script
checks it stays under 1e-3 and that the plate decodes to the rendered frames.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import tempfile

import av
import cv2
import numpy as np
import OpenEXR

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
try:
    import stereoforge  # noqa: F401
except ImportError:  # not installed: use the checkout's backend
    sys.path.insert(0, os.path.join(REPO, "backend"))

import blender_truth  # noqa: E402

from stereoforge.io.images import write_exr  # noqa: E402
from stereoforge.io.video import VideoWriter  # noqa: E402

DEMO_DIR = os.path.join(REPO, "backend", "stereoforge", "data", "demo")
#: truth.json keys about the stereo rig: the demo is a mono plate, the rig is the user's choice.
RIG_KEYS = ("interocular", "convergence_distance", "convergence_mode", "pivot", "views")
MAX_DEPTH_RELATIVE_ERROR = 1e-3


def _read_z(path: str) -> np.ndarray:
    with OpenEXR.File(path) as exr:
        return np.array(exr.parts[0].channels["Z"].pixels)


def _folder_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)


def make_demo(out_dir: str = DEMO_DIR, frames: int = 36, width: int = 480, height: int = 270, fps: int = 24,
              samples: int = 16) -> dict:
    """Render and store the demo clip in ``out_dir``; returns the demo.json contents plus a few checks."""
    with tempfile.TemporaryDirectory(prefix="stereoforge-demo-") as render_dir:
        truth = blender_truth.render_truth(render_dir, scene="demo", eyes=False, width=width, height=height,
                                           frames=frames, fps=fps, samples=samples)
        centre = sorted(glob.glob(os.path.join(render_dir, "center", "*.png")))
        depths = sorted(glob.glob(os.path.join(render_dir, "depth", "*.exr")))
        if len(centre) != frames or len(depths) != frames:
            raise RuntimeError(f"expected {frames} frames, got {len(centre)} images and {len(depths)} depths")

        os.makedirs(out_dir, exist_ok=True)
        depth_dir = os.path.join(out_dir, "depth")
        shutil.rmtree(depth_dir, ignore_errors=True)  # no stale frames from a longer clip

        rgb_frames = [cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for path in centre]
        plate = os.path.join(out_dir, "plate.mp4")
        with VideoWriter(plate, width, height, fps, codec="h264", crf=12) as writer:
            for rgb in rgb_frames:
                writer.write(rgb)

        worst = 0.0
        for path in depths:
            depth = _read_z(path)
            target = os.path.join(depth_dir, os.path.basename(path))
            write_exr(target, {"Z": depth}, half=True)
            stored = _read_z(target).astype(np.float32)
            finite = np.isfinite(depth)
            if not np.array_equal(finite, np.isfinite(stored)):
                raise RuntimeError(f"{target}: half floats changed which pixels are finite")
            worst = max(worst, float(np.max(np.abs(stored[finite] - depth[finite]) / depth[finite])))
        if worst >= MAX_DEPTH_RELATIVE_ERROR:
            raise RuntimeError(f"half-float depth is off by {worst:.2e} (relative); limit {MAX_DEPTH_RELATIVE_ERROR}")

    # The plate must decode to the frames it was made from (up to H.264 and 4:2:0 loss).
    with av.open(plate) as container:
        decoded = [frame.reformat(format="rgb24", src_colorspace="ITU709", src_color_range="MPEG").to_ndarray()
                   for frame in container.decode(video=0)]
    if len(decoded) != frames:
        raise RuntimeError(f"{plate} decodes to {len(decoded)} frames, expected {frames}")
    errors = [np.abs(a.astype(np.int16) - b).mean() for a, b in zip(decoded, rgb_frames, strict=True)]
    psnr = [10 * np.log10(255.0**2 / max(np.mean((a.astype(np.float64) - b) ** 2), 1e-12))
            for a, b in zip(decoded, rgb_frames, strict=True)]

    info = {key: value for key, value in truth.items() if key not in RIG_KEYS and key != "seconds_per_frame"}
    info.update({
        "plate": "plate.mp4",
        "depth": "depth/{frame:06d}.exr",
        "depth_format": "OpenEXR, one half-float channel 'Z': planar depth in metres along the camera's -Z "
                        "axis (Cycles' Z pass), +inf where no geometry is hit",
        "plate_format": "H.264 (libx264) yuv420p, crf 12, BT.709 limited range; frame n is "
                        "depth/{n:06d}.exr (numbered from 1)",
    })
    temp = os.path.join(out_dir, ".demo.tmp.json")
    with open(temp, "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    os.replace(temp, os.path.join(out_dir, "demo.json"))
    return {**info, "checks": {"depth_max_relative_error": worst,
                               "plate_mean_abs_error": float(np.mean(errors)),
                               "plate_min_psnr_db": float(np.min(psnr)),
                               "seconds_per_frame": truth["seconds_per_frame"],
                               "bytes": _folder_size(out_dir)}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Render the demo scene with Blender and write the embedded demo clip (plate.mp4, half-float "
                    "depth EXRs, demo.json) into the backend package.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", default=DEMO_DIR, metavar="DIR", help="where to write the demo data")
    parser.add_argument("--frames", type=int, default=36, help="number of frames")
    parser.add_argument("--width", type=int, default=480, help="image width, pixels")
    parser.add_argument("--height", type=int, default=270, help="image height, pixels")
    parser.add_argument("--fps", type=int, default=24, help="frames per second, frames/s")
    parser.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel, count")
    args = parser.parse_args(argv)
    result = make_demo(args.out, frames=args.frames, width=args.width, height=args.height, fps=args.fps,
                       samples=args.samples)
    print(json.dumps(result["checks"], indent=2))
    print(f"wrote {args.out}: {result['checks']['bytes'] / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
