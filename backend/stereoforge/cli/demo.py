"""``stereoforge demo -o DIR``: the whole convert on the embedded demo clip (no download, no GPU)."""

from __future__ import annotations

import argparse
import time

from .console import add_progress_options, report
from .convert import convert_here


def register(sub) -> None:
    """The ``demo`` subcommand."""
    p = sub.add_parser("demo", help="run the whole pipeline on the embedded demo clip (no download, no GPU)",
                       description="Convert the embedded demo clip (rendered with Blender, with its true depth "
                                   "from the Z pass) into a stereo shot with a side-by-side and an anaglyph "
                                   "video.")
    p.add_argument("-o", "--output", default="demo-out", metavar="DIR",
                   help="the shot folder to write (default: %(default)s)")
    add_progress_options(p)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import demo_spec

    started = time.perf_counter()
    result = convert_here(demo_spec(args.output), args.progress)
    report(result, started)
    sbs = [v for v in result["videos"] if v.endswith("_sbs.mp4")]
    print("\nWatch it:")
    if sbs:
        print(f"  {sbs[0]}\n    side-by-side, left eye on the left: a 3D TV or a headset player in SBS mode "
              "shows it in depth; any player shows the two eyes next to each other "
              "(cross your eyes slightly by swapping, or use VLC's Video > Stereo Mode).")
    for video in result["videos"]:
        if video.endswith("_anaglyph.mp4"):
            print(f"  {video}\n    red-cyan anaglyph: any player, with red-cyan glasses.")
    print("  The shot folder holds each stage's files: source/, depth/, cloud.usdc (open it in Blender: "
          "File > Import > USD), eyes/, masks/, filled/ and out/.")
    return 0
