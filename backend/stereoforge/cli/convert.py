"""``stereoforge convert SOURCE -o SHOT ...``: a mono clip and its depth -> a stereo shot (:func:`pipeline.convert`)."""

from __future__ import annotations

import argparse
import time

from ..spec import ConvertSpec
from .console import add_job_options, add_spec_options, report, run_job, run_on_server, spec_values


def register(sub) -> None:
    """The ``convert`` subcommand: one option per field of :class:`ConvertSpec`."""
    p = sub.add_parser("convert", help="a mono clip and its depth -> a stereo shot",
                       description="Turn SOURCE and its depth into a stereo shot folder: source/, depth/ "
                                   "(metres), cloud.usdc (point clouds), eyes/, masks/, filled/, out/ (stereo "
                                   "frames and video). Re-running on the same folder resumes; changed settings "
                                   "remake only the stages they affect.")
    p.add_argument("source", metavar="SOURCE",
                   help="an image (png/jpg/exr/tif), a folder of frames, or a video (mp4/mov/mkv/webm)")
    p.add_argument("-o", "--output", required=True, metavar="SHOT_DIR", help="the shot folder to write")
    add_spec_options(p)
    add_job_options(p)
    p.set_defaults(func=cmd_convert)


def convert_here(spec: ConvertSpec, progress: str) -> dict:
    """Convert ``spec`` in this process, with the progress display ``--progress`` asked for."""
    from ..pipeline import convert

    return run_job(lambda progress, log: convert(spec, progress=progress, log=log), progress)


def cmd_convert(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    spec = ConvertSpec(source=args.source, output_dir=args.output, **spec_values(args))
    result = run_on_server(args, "convert", spec.to_dict()) if args.server else convert_here(spec, args.progress)
    report(result, started, args.progress)
    return 0
