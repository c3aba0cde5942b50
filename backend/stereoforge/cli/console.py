"""What the command line's commands share: their options made from the spec's fields, progress display, the
closing report, and running a job here or on a server. Nothing in the library imports this.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import typing
from collections.abc import Callable

from ..errors import InputError
from ..spec import ConvertSpec, flag_of, options


def _parser(f, kind) -> Callable[[str], object]:
    """The argparse ``type`` of a spec field: its own ``parse``, a comma list, or its annotated type."""
    parse = f.metadata.get("parse")
    if f.metadata.get("listed"):
        parse = lambda text: tuple(t.strip() for t in text.split(",") if t.strip())  # noqa: E731
    elif parse is None:
        parse = kind

    def convert(text: str):
        try:
            return parse(text)
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None

    convert.__name__ = f.name  # argparse names the option's type in its error message
    return convert


def add_spec_options(p: argparse.ArgumentParser, cls=ConvertSpec, skip: tuple[str, ...] = (),
                     defaults: dict | None = None) -> None:
    """One command-line option per option field of ``cls`` (stereoforge.spec.option), grouped as declared."""
    hints = typing.get_type_hints(cls)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in options(cls):
        if f.name in skip:
            continue
        meta = f.metadata
        group = groups.get(meta["group"]) or groups.setdefault(meta["group"], p.add_argument_group(meta["group"]))
        default = (defaults or {}).get(f.name, f.default)
        if hints[f.name] is bool:
            flag = flag_of(f) if not default else "--no-" + f.name.replace("_", "-")
            group.add_argument(flag, dest=f.name, action="store_false" if default else "store_true",
                               help=meta["help"])
            continue
        kind = next((t for t in typing.get_args(hints[f.name]) if t is not type(None)), hints[f.name])
        group.add_argument(flag_of(f), dest=f.name, default=default, metavar=meta["metavar"],
                           choices=None if meta["listed"] else meta["choices"], help=meta["help"],
                           type=_parser(f, kind))


def spec_values(args: argparse.Namespace, cls=ConvertSpec, skip: tuple[str, ...] = ()) -> dict:
    """The option fields of ``cls`` as the command line gave them."""
    return {f.name: getattr(args, f.name) for f in options(cls) if f.name not in skip}


def add_job_options(p: argparse.ArgumentParser) -> None:
    """Where the job runs and how its progress shows (``convert`` and ``generate``)."""
    g = p.add_argument_group("where the job runs (default: in this process)")
    g.add_argument("--server", metavar="URL",
                   help="run the job on a StereoForge server ('stereoforge serve') instead of here, e.g. "
                        "http://gpubox:8765; paths are the server's, relative ones under its --root")
    g.add_argument("--token", metavar="T", help="the server's token, if it was started with one")
    add_ray_option(g, "spread the shot over a Ray cluster: each stage's frames become Ray tasks of one thread (the "
                      "inpainting one task per eye, the encoding one per video), and the files are the bytes one "
                      "process writes. Alone: a cluster of this machine's cores")
    add_progress_options(p)


def add_ray_option(group, what: str) -> None:
    """``--ray [ADDRESS]`` (convert, generate, serve)."""
    group.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                       help=f"{what}; ADDRESS: a running cluster, as 'ray start --head' prints it (HOST:6379, "
                            "ray://HOST:10001, or auto for the one on this machine). Every node needs stereoforge "
                            "installed and the shot folder at the same path")


def add_progress_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--progress", choices=("bar", "json", "none"), default="bar",
                   help="bar: a progress bar per stage on a terminal (silent when piped); json: one JSON object "
                        "per line on stdout, {\"stage\", \"done\", \"total\"}, for other programs; none "
                        "(default: bar)")
    p.add_argument("-q", "--quiet", action="store_const", const="none", dest="progress",
                   help="same as --progress none")


class Bars:
    """One tqdm bar per stage on a terminal; silent when the output is piped (tqdm's ``disable=None``)."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bars: dict = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total, desc=f"{stage:>12}", unit="frame", disable=None,
                                          leave=True, dynamic_ncols=True)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def run_job(run: Callable, progress: str):
    """``run(progress=..., log=...)`` with the display ``--progress`` asked for. With ``json``, standard output
    holds only the JSON lines: what a library prints there while the job runs goes to standard error (Ray's
    driver reports a worker that died so)."""
    if progress == "json":
        out = sys.stdout
        emit = lambda record: print(json.dumps(record), file=out, flush=True)
        with contextlib.redirect_stdout(sys.stderr):
            # Notices (a stage remade because its settings changed) are rare and matter on a farm: never silenced.
            return run(progress=lambda stage, done, total: emit({"stage": stage, "done": done, "total": total}),
                       log=lambda m: emit({"event": "notice", "message": m}))
    bars = Bars(progress != "bar")
    try:
        return run(progress=bars, log=lambda m: print(m, file=sys.stderr))
    finally:
        bars.close()


def check_run_options(args: argparse.Namespace) -> None:
    """Where a job runs: here (whole, a --chunk or --prepare), on Ray, or on a server; one of them."""
    given = [flag for flag, value in (("--server", args.server), ("--ray", args.ray),
                                      ("--chunk", getattr(args, "chunk", None)),
                                      ("--prepare", getattr(args, "prepare", False))) if value]
    if len(given) > 1:
        raise InputError(f"{' and '.join(given)} each say where and how the job runs; give one of them")


def run_on_server(args: argparse.Namespace, kind: str, body: dict) -> dict:
    """A job run by ``--server URL``, with the same progress display as a local run."""
    from ..remote import run_remote

    return run_job(lambda progress, log: run_remote(args.server, args.token, kind, body, progress, log),
                   args.progress)


def report(result: dict, started: float, progress: str = "bar") -> None:
    seconds = time.perf_counter() - started
    if progress == "json":
        print(json.dumps({"event": "finished", "seconds": seconds, **result}, default=str), flush=True)
        return
    w, h = result["size"]
    print(f"{result['frames']} frames at {w}x{h} in {seconds:.1f} s "
          f"({seconds / max(result['frames'], 1):.2f} s per frame)")
    print(f"shot: {result['shot_dir']}")
    for video in result["videos"]:
        print(f"video: {video}")
