"""``stereoforge bench blender``: how long Blender takes to render the eyes, through the add-on.

    stereoforge bench blender [--height 480 --width 854 --frames 4 --samples 16 --json]

The other eye renderer: where ``bench pipeline`` times the splatter's eyes, this times Blender's. It builds the
add-on zip from the checkout, writes a synthetic clip (``bench pipeline``'s), and in a headless Blender with a
fresh user folder (``tools/bench_blender_eyes.py``) installs the add-on, loads the clip, imports its point
clouds, sets up the stereo camera and times the eye renders alone: Cycles on the CPU, both eyes of every frame.
It prints the seconds per eye-frame, the Blender process's peak memory, the local backend's start (once per
Blender session) and a resume with nothing to do (Run again on the finished shot, with Blender's eyes and with
the backend's).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time

from ..errors import InputError

SESSION = "tools/bench_blender_eyes.py"


def bench_blender(height: int = 480, width: int = 854, frames: int = 4, samples: int = 16,
                  blender_python: str | None = None, workdir: str | None = None, keep: bool = False) -> dict:
    """Render both eyes of a synthetic clip with Blender through the add-on; returns the session's figures
    (see ``tools/bench_blender_eyes.py``) plus ``wall_seconds`` (the whole session, Blender's start included)."""
    from .addon_build import build, checkout_root
    from .bench import FAR, NEAR, write_synthetic_clip
    from .quality import find_blender_python

    for name, value in (("--height", height), ("--width", width), ("--frames", frames), ("--samples", samples)):
        if value < 1:
            raise InputError(f"{name} {value} is not valid; give 1 or more")
    root = checkout_root()  # the add-on and the session script come from the checkout
    python = find_blender_python(blender_python)
    height, width = height + height % 2, width + width % 2  # H.264 wants even sizes
    work = tempfile.mkdtemp(prefix="stereoforge-bench-blender-", dir=workdir)
    try:
        addon_zip = build(os.path.join(work, "dist"))
        video, depth = write_synthetic_clip(work, frames, height, width)
        user = os.path.join(work, "user")
        os.makedirs(user)
        env = dict(os.environ, BLENDER_USER_RESOURCES=user)
        started = time.perf_counter()
        run = subprocess.run([python, str(root / SESSION), "--zip", str(addon_zip), "--plate", video, "--depth",
                              depth, "--near", str(NEAR), "--far", str(FAR), "--out", os.path.join(work, "shot"),
                              "--samples", str(samples)], capture_output=True, text=True, env=env, cwd=work)
        wall = time.perf_counter() - started
        lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT: ")]
        if run.returncode != 0 or not lines:
            tail = "\n".join((run.stderr + run.stdout).strip().splitlines()[-10:])
            raise InputError(f"the Blender session failed ({python} {root / SESSION}):\n{tail}")
        result = json.loads(lines[-1][len("RESULT: "):])
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    result["wall_seconds"] = wall
    if keep:
        result["workdir"] = work
    return result


def cmd_blender(args: argparse.Namespace) -> int:
    r = bench_blender(args.height, args.width, args.frames, args.samples, args.blender_python, args.workdir,
                      args.keep)
    print(f"Blender eyes through the add-on, {r['width']}x{r['height']}, {r['frames']} frames, {r['samples']} "
          f"samples, Cycles on {r['device']}:")
    print(f"  render      {r['seconds_per_eye_frame']:8.2f} s per eye-frame  ({r['render_seconds']:.1f} s for "
          f"{r['eye_frames']} eye-frames)")
    print(f"  before it   {r['setup_seconds']:8.2f} s  (load the clip, import the clouds, set up the camera)")
    print(f"  backend     {r['backend_start_seconds']:8.2f} s  to start the local backend (once per session)")
    print(f"  resume      {r['resume_seconds']:8.2f} s  Run again with nothing to do (Blender eyes); "
          f"{r['resume_splatter_seconds']:.2f} s with the backend's eyes")
    print(f"  peak RSS of the Blender process {r['peak_rss_mb']:.0f} MB; whole session {r['wall_seconds']:.1f} s")
    if "workdir" in r:
        print(f"  clip and shot kept in {r['workdir']}")
    if args.json:
        print(json.dumps(r))
    return 0


def register(bench_subparsers) -> None:
    """Add ``blender`` to the sub-commands of ``stereoforge bench``."""
    p = bench_subparsers.add_parser(
        "blender", help="Blender's eye renders through the add-on: seconds per eye-frame",
        description="Build the add-on, install it into a fresh headless Blender, load a synthetic clip and time "
                    "Blender's renders of both eyes (Cycles, CPU): the other eye renderer, next to the "
                    "splatter that bench pipeline times. Needs a source checkout and a Python with bpy 4.5.")
    p.add_argument("--height", type=int, default=480, help="frame height in pixels (default: %(default)s)")
    p.add_argument("--width", type=int, default=854, help="frame width in pixels (default: %(default)s)")
    p.add_argument("--frames", type=int, default=4, help="frames in the clip (default: %(default)s)")
    p.add_argument("--samples", type=int, default=16, help="Cycles samples per pixel, as the add-on's Eye "
                                                           "Samples (default: %(default)s)")
    p.add_argument("--blender-python", metavar="PATH", default=None,
                   help="a Python with bpy 4.5 to render with (default: this one)")
    p.add_argument("--workdir", metavar="DIR", help="where to write the clip and the shot (default: a temporary "
                                                     "folder)")
    p.add_argument("--keep", action="store_true", help="keep the clip and the shot folder")
    p.add_argument("--json", action="store_true", help="end with one line of JSON holding the figures")
    p.set_defaults(func=cmd_blender)
