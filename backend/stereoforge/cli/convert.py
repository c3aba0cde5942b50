"""``stereoforge convert SOURCE -o SHOT ...``: a mono clip and its depth -> a stereo shot (:func:`pipeline.convert`)."""

from __future__ import annotations

import argparse
import time

from ..spec import ConvertSpec
from .console import (
    add_job_options,
    add_spec_options,
    check_run_options,
    report,
    run_job,
    run_on_server,
    spec_values,
)


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
    g = p.add_argument_group("render farm (Deadline, OpenCue, Flamenco: see the README's 'On a render farm')")
    g.add_argument("--chunk", type=parse_chunk, metavar="A:B",
                   help="one task of a farm job: do only the shot's frames A to B (from 1, both included) of the "
                        "stages that split by frames (ingest, cloud, eyes, composite; inpaint with --inpaint "
                        "telea or none); the depth range and the rig are still worked out over the whole clip, so "
                        "the chunks give the bytes of one run. Run --prepare once before the chunks, inpaint "
                        "(default inpainter) and encode once after them")
    g.add_argument("--prepare", action="store_true",
                   help="the first task of a farm job: check the inputs, clear the stages whose settings changed "
                        "and write shot.json, then stop; --chunk tasks refuse a shot not prepared for their "
                        "settings (a chunk never clears a stage nor writes shot.json: others may be writing)")
    p.set_defaults(func=cmd_convert)


def parse_chunk(text: str) -> tuple[int, int]:
    """``--chunk A:B`` (or ``N``) -> (A, B): shot frames, from 1, both ends included."""
    first, _, last = text.partition(":")
    try:
        chunk = int(first), int(last or first)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--chunk {text!r} is not valid; write A:B, the shot's frames A to B "
                                         "(from 1, both included)") from None
    if not 1 <= chunk[0] <= chunk[1]:
        raise argparse.ArgumentTypeError(f"--chunk {text} is not valid; give A:B with 1 <= A <= B (shot frames "
                                         "from 1, both included)")
    return chunk


def convert_here(spec: ConvertSpec, progress: str, **run) -> dict:
    """Convert ``spec`` in this process (``run``: a farm task's ``chunk`` or ``prepare_only``), with the progress
    display ``--progress`` asked for."""
    from ..pipeline import convert

    return run_job(lambda progress, log: convert(spec, progress=progress, log=log, **run), progress)


def convert_on_ray(spec: ConvertSpec, address: str, progress: str) -> dict:
    """Convert ``spec`` on the Ray cluster at ``address`` (:mod:`stereoforge.farm`)."""
    from ..farm import convert

    return run_job(lambda progress, log: convert(spec, address, progress=progress, log=log), progress)


def cmd_convert(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    check_run_options(args)
    spec = ConvertSpec(source=args.source, output_dir=args.output, **spec_values(args))
    if args.server:
        result = run_on_server(args, "convert", spec.to_dict())
    elif args.ray:
        result = convert_on_ray(spec, args.ray, args.progress)
    else:
        result = convert_here(spec, args.progress, chunk=args.chunk, prepare_only=args.prepare)
    report(result, started, args.progress)
    return 0
