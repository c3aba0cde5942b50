"""The Blender side of ``stereoforge bench blender``: time the add-on's eye renders in a headless Blender.

Run with a Python that has ``bpy`` 4.5, with ``BLENDER_USER_RESOURCES`` pointing at an empty folder (the add-on is
installed there, as a user would)::

    python tools/bench_blender_eyes.py --zip stereoforge-X.zip --plate clip.mp4 --depth depth.npy \\
        --near 1.2 --far 10 --out SHOT --samples 16

It installs and enables the add-on zip, points the scene's StereoForge settings at the clip, runs the stages
before the eyes (load, import clouds, set up the stereo camera) and then times the eye renders alone (Cycles on
the CPU, both eyes of every frame). Then it finishes the shot (inpaint, composite) and times a resume with
nothing to do (Run again, on the warm backend), with Blender's eyes and with the backend's. The last line it
prints is ``RESULT: {...}`` (JSON): ``frames``, ``eye_frames``, ``render_seconds``, ``seconds_per_eye_frame``,
``setup_seconds``, ``backend_start_seconds``, ``resume_seconds``, ``resume_splatter_seconds`` and
``peak_rss_mb`` of this Blender process.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import sys
import time

import bpy


def main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--zip", required=True)
    p.add_argument("--plate", required=True)
    p.add_argument("--depth", required=True)
    p.add_argument("--near", type=float, required=True)
    p.add_argument("--far", type=float, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--samples", type=int, default=16)
    args = p.parse_args(argv)

    done = bpy.ops.extensions.package_install_files(repo="user_default", filepath=args.zip, enable_on_install=True)
    if done != {"FINISHED"}:
        raise SystemExit(f"installing {args.zip} failed: {done}")
    s = bpy.context.scene.stereoforge
    s.source, s.source_path, s.depth_path = "VIDEO", args.plate, args.depth
    s.depth_kind, s.near, s.far = "RELATIVE", args.near, args.far
    s.output_dir, s.samples, s.eye_renderer = args.out, args.samples, "BLENDER"

    def stage(name: str) -> float:
        started = time.perf_counter()
        result = getattr(bpy.ops.stereoforge, name)()
        if result != {"FINISHED"}:
            message = bpy.context.window_manager.stereoforge_job.message
            raise SystemExit(f"stereoforge.{name} did not finish: {result} {message}")
        return time.perf_counter() - started

    backend_start = time.perf_counter()
    bpy.ops.stereoforge.check_backend()  # the local backend starts here, once for the session
    backend_start = time.perf_counter() - backend_start
    setup = sum(stage(name) for name in ("load", "import_clouds", "setup_camera"))
    render = stage("render_eyes")
    # The eyes render in a scene of the add-on's own, gone by now: the shot says what was rendered.
    with open(os.path.join(args.out, "shot.json")) as f:
        meta = json.load(f)
    frames = meta["frames"]
    stage("inpaint")
    stage("composite")
    resume = stage("run")
    s.eye_renderer = "SPLATTER"
    stage("run")
    resume_splatter = stage("run")
    gpu = importlib.import_module("bl_ext.user_default.stereoforge.scene").has_gpu()
    return {"frames": frames, "eye_frames": 2 * frames, "render_seconds": render,
            "seconds_per_eye_frame": render / (2 * frames), "setup_seconds": setup,
            "backend_start_seconds": backend_start, "resume_seconds": resume,
            "resume_splatter_seconds": resume_splatter,
            "width": meta["camera"]["width"], "height": meta["camera"]["height"], "samples": args.samples,
            "device": "GPU" if gpu else "CPU", "threads": bpy.context.scene.render.threads,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}


if __name__ == "__main__":
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    print("RESULT: " + json.dumps(main(argv)), flush=True)
