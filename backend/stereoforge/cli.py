"""The ``stereoforge`` command line.

    stereoforge demo -o DIR                 the whole pipeline on the embedded demo clip
    stereoforge convert SOURCE -o SHOT ...  a mono clip and its depth -> a stereo shot

Bad input prints one line, ``stereoforge: error: ...``, and exits with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator

from . import __version__, generate, server
from .console import (
    add_job_options,
    add_progress_options,
    add_spec_options,
    check_run_options,
    parse_chunk,
    report,
    run_job,
    run_on_server,
    spec_values,
)
from .dev import addon_build, bench, bench_blender, bench_farm, quality
from .errors import Cancelled, InputError, StereoForgeError, disk_error
from .models import registry
from .shot import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_FAILED
from .spec import ConvertSpec


class _Parser(argparse.ArgumentParser):
    """Usage errors on one line, like every other error of the command."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _take_interrupts() -> None:
    """Stop cleanly on SIGINT even when started with it ignored.

    A program that drives us with ``--progress json`` (the Blender add-on, a pipeline's wrapper) cancels with
    SIGINT; but a process started from a background job of a non-interactive shell inherits SIGINT ignored, and
    would run on to the end (found when the test suite itself ran in the background).
    """
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a farm's scheduler, ``kill``): stopped like Ctrl-C, so that no half-written file stays."""


@contextlib.contextmanager
def _sigterm_stops() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` while the command runs (the handler before it is put back after)."""
    def stop(signum, frame):
        raise Terminated()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _convert(spec: ConvertSpec, progress: str, **run) -> dict:
    from .pipeline import convert

    return run_job(lambda progress, log: convert(spec, progress=progress, log=log, **run), progress)


def _convert_on_ray(spec: ConvertSpec, address: str, progress: str) -> dict:
    from .farm import convert

    return run_job(lambda progress, log: convert(spec, address, progress=progress, log=log), progress)


def cmd_convert(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    check_run_options(args)
    spec = ConvertSpec(source=args.source, output_dir=args.output, **spec_values(args))
    if args.server:
        result = run_on_server(args, "convert", spec.to_dict())
    elif args.ray:
        result = _convert_on_ray(spec, args.ray, args.progress)
    else:
        result = _convert(spec, args.progress, chunk=args.chunk, prepare_only=args.prepare)
    report(result, started, args.progress)
    return 0



def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import demo_spec

    started = time.perf_counter()
    spec = demo_spec(args.output)
    result = _convert(spec, args.progress)
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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="stereoforge",
        description="Stereo production backend: a mono clip and its depth become per-frame point clouds, "
                    "left and right eyes, dropout masks, inpainted eyes and a stereo video.")
    parser.add_argument("--version", action="version", version=f"stereoforge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

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

    p = sub.add_parser("demo", help="run the whole pipeline on the embedded demo clip (no download, no GPU)",
                       description="Convert the embedded demo clip (rendered with Blender, with its true depth "
                                   "from the Z pass) into a stereo shot with a side-by-side and an anaglyph "
                                   "video.")
    p.add_argument("-o", "--output", default="demo-out", metavar="DIR",
                   help="the shot folder to write (default: %(default)s)")
    add_progress_options(p)
    p.set_defaults(func=cmd_demo)

    generate.register(sub)
    registry.register(sub)
    server.register(sub)
    benches = bench.register(sub)
    quality.register(benches)  # bench quality: Blender ground truth, per inpainter
    bench_blender.register(benches)  # bench blender: the add-on's eye renders
    bench_farm.register(benches)  # bench farm: a shot on 1 and 2 Ray workers
    addon_build.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "progress", None) == "json":
        _take_interrupts()
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    # The server stops on SIGTERM its own way (uvicorn's).
    stops = _sigterm_stops() if args.func is not server.cmd_serve else contextlib.nullcontext()
    try:
        with stops:
            return args.func(args)
    except (InputError, OSError) as exc:
        message = str(exc if isinstance(exc, InputError) else disk_error(exc))
        if getattr(args, "progress", None) == "json":
            print(json.dumps({"event": "error", "message": message}), flush=True)
        print(f"stereoforge: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Cancelled as exc:
        print(f"stereoforge: {exc}", file=sys.stderr)
        return EXIT_CANCELLED
    except StereoForgeError as exc:
        print(f"stereoforge: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt as exc:
        how, status = ("stopped by SIGTERM", 128 + signal.SIGTERM) if isinstance(exc, Terminated) else (
            "interrupted", EXIT_CANCELLED)
        print(f"stereoforge: {how}; finished frames are kept, run the same command again to resume",
              file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

