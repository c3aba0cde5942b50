"""The ``stereoforge`` command line, one module per command on top of the library (which knows nothing of it):

    stereoforge convert SOURCE -o SHOT ...   (:mod:`.convert`)   a mono clip and its depth -> a stereo shot
    stereoforge demo -o DIR                  (:mod:`.demo`)      the whole pipeline on the embedded demo clip
    stereoforge generate PROMPT -o SHOT ...  (:mod:`.generate`)  a prompt -> a stereo shot
    stereoforge serve --root DIR             (:mod:`.serve`)     the job server
    stereoforge models                       (:mod:`.models`)    the models on this machine
    stereoforge bench ..., addon build       (:mod:`stereoforge.dev`, the developer tools)

:mod:`.console` holds what the commands share (options made from the spec, progress, the closing report,
``--server``). Bad input prints one line, ``stereoforge: error: ...``, and exits with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Iterator

from .. import __version__
from ..dev import addon_build, bench, bench_blender, bench_farm, quality
from ..errors import Cancelled, InputError, StereoForgeError, disk_error
from ..shot import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_FAILED
from . import convert, demo, generate, models, serve


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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="stereoforge",
        description="Stereo production backend: a mono clip and its depth become per-frame point clouds, "
                    "left and right eyes, dropout masks, inpainted eyes and a stereo video.")
    parser.add_argument("--version", action="version", version=f"stereoforge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    convert.register(sub)
    demo.register(sub)
    generate.register(sub)
    models.register(sub)
    serve.register(sub)
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
    stops = _sigterm_stops() if args.func is not serve.cmd_serve else contextlib.nullcontext()
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


