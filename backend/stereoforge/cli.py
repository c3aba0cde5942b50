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

from . import __version__, addon_build, bench, generate, server
from .composite import LAYOUTS, VR_TAGS
from .depth import DEPTH_KINDS, EDGE_RADIUS
from .errors import Cancelled, InputError, StereoForgeError, disk_error
from .inpaint import DEFAULT_INPAINTER, INPAINTERS
from .models import registry
from .rig import CONVERGENCE_MODES, PIVOTS
from .spec import CODECS, VIDEO_CONTAINERS, ConvertSpec, parse_frames


class _Parser(argparse.ArgumentParser):
    """Usage errors on one line, like every other error of the command."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _frames(text: str) -> tuple[int | None, int | None]:
    try:
        return parse_frames(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _Bars:
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


def _positive(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _layouts(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def add_convert_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``convert`` (and later ``generate``): depth, camera, rig, inpainting and output."""
    g = p.add_argument_group("depth")
    g.add_argument("--depth", metavar="PATH",
                   help="depth for SOURCE: one file for an image (.npy, .exr, 16-bit .png/.tif), a folder of "
                        "per-frame files, or one .npy/.npz stack shaped (frames, height, width)")
    g.add_argument("--depth-kind", choices=DEPTH_KINDS, default="relative",
                   help="metric: metres along the camera axis; relative: affine-invariant inverse depth (as "
                        "Depth Anything outputs), mapped to --near..--far; disparity: pixels between a stereo "
                        "pair, with --baseline (default: %(default)s)")
    g.add_argument("--depth-scale", type=_positive, default=1.0, metavar="F",
                   help="multiply the file's values by F first, e.g. 0.001 for millimetres (default: 1)")
    g.add_argument("--near", type=_positive, default=1.0, metavar="M",
                   help="relative depth: metres of the nearest point (default: 1, as seed 001)")
    g.add_argument("--far", type=_positive, default=10.0, metavar="M",
                   help="relative depth: metres of the farthest point (default: 10)")
    g.add_argument("--baseline", type=_positive, metavar="M",
                   help="disparity depth: the stereo pair's baseline in metres (default: the interocular)")
    g.add_argument("--depth-smoothing", type=_positive, default=1.0, metavar="S",
                   help="relative depth: seconds over which the depth normalisation may change; 0 normalises "
                        "each frame on its own (flickers) (default: 1)")
    g.add_argument("--depth-edge-radius", type=int, default=EDGE_RADIUS, metavar="PX",
                   help="make soft depth edges up to this many pixels wide sharp, so that the blurred outlines "
                        "a depth model gives do not smear stray points into the holes; 0 keeps the depth as it is "
                        f"(a renderer's Z pass) (default: {EDGE_RADIUS})")
    g.add_argument("--depth-model", metavar="MODEL",
                   help="estimate the depth with a model instead of --depth: a Hugging Face id or a local folder "
                        "of a transformers depth-estimation model (Depth Anything V2, DPT, ZoeDepth) or a "
                        "diffusers Marigold depth pipeline; its kind of depth is known (see stereoforge models)")

    g = p.add_argument_group("camera (principal point at the image centre)")
    g.add_argument("--focal-px", type=_positive, metavar="F", help="focal length in pixels")
    g.add_argument("--hfov", type=_positive, metavar="DEG",
                   help="horizontal field of view in degrees (default: a 35 mm lens on a 36 mm-wide sensor, "
                        "about 54.4 degrees)")

    g = p.add_argument_group("stereo rig (Blender's stereo camera)")
    g.add_argument("--interocular", type=_positive, metavar="M",
                   help="distance between the eyes in metres (default: 0.065; with --depth-kind disparity, "
                        "the baseline)")
    g.add_argument("--convergence-distance", type=_positive, metavar="M",
                   help="metres to the zero-parallax plane (default: the middle of the clip's depth range in "
                        "parallax, so the nearest and farthest points get equal and opposite parallax)")
    g.add_argument("--convergence-mode", choices=CONVERGENCE_MODES,
                   help="OFFAXIS: parallel eyes with shifted image windows (Blender's default); PARALLEL: no "
                        "shift, everything in front of the screen; TOE: eyes turned inwards (default: OFFAXIS, "
                        "or PARALLEL with --depth-kind disparity)")
    g.add_argument("--pivot", choices=PIVOTS,
                   help="which view stays where the source camera is: CENTER renders both eyes from the "
                        "centre view; LEFT keeps the source as the left eye and renders the right one "
                        "(default: CENTER, or LEFT with --depth-kind disparity)")
    g.add_argument("--max-parallax", type=_positive, metavar="PCT",
                   help="depth budget: set the interocular so the nearest point's parallax is PCT %% of the "
                        "image width (1-3 is comfortable on a TV)")
    g.add_argument("--interocular-curve", metavar="KEYS|FILE",
                   help="an interocular that changes over the shot: keys FRAME:METRES,... (e.g. 1:0.03,8:0.2; shot "
                        "frames from 1, linear between keys, held outside) or a file of 'FRAME METRES' lines")
    g.add_argument("--convergence-curve", metavar="KEYS|FILE",
                   help="a convergence distance that changes over the shot, keyed as --interocular-curve")
    g.add_argument("--max-parallax-curve", metavar="KEYS|FILE",
                   help="a depth budget that changes over the shot: keys FRAME:PCT, as --interocular-curve")
    g = p.add_argument_group("comfort")
    g.add_argument("--max-far-parallax", type=_positive, metavar="PCT",
                   help="the farthest point's parallax (behind the screen) may be at most PCT %% of the image "
                        "width; a rig that gives more is narrowed, with a warning")
    g.add_argument("--screen-width", type=_positive, metavar="M",
                   help="width of the screen the shot is for, in metres: far parallax wider than a viewer's eyes "
                        "(65 mm) there makes the eyes diverge, so the rig is narrowed, with a warning")
    g.add_argument("--floating-window", action="store_true",
                   help="black out the left edge of the left eye and the right edge of the right eye where "
                        "something in front of the screen is cut by the frame (a window violation)")

    g = p.add_argument_group("inpainting and output")
    g.add_argument("--inpaint", choices=sorted(INPAINTERS), default=DEFAULT_INPAINTER,
                   help="how dropout (pixels no point reached) is filled: background copies the background "
                        "that nearby frames saw there (optical flow), else continues the farther side, stable "
                        "from frame to frame; telea is OpenCV's, frame by frame; none leaves it black "
                        "(default: %(default)s)")
    g.add_argument("--layout", type=_layouts, default=("sbs",), metavar="LAYOUT[,LAYOUT...]",
                   help=f"one or more of {', '.join(LAYOUTS)}: side-by-side, half side-by-side, top-bottom, "
                        "half top-bottom, Dubois red-cyan anaglyph, two separate eyes; vr180: each eye as a "
                        "half-sphere equirectangular picture (reprojected with the shot's focal length, black "
                        "outside the camera's view), side by side, tagged for headsets (Spherical Video V2); "
                        "exr-multiview: one EXR per frame with both eyes as the views left and right (linear, "
                        "half float, a dropout channel), for Nuke and Blender, no video (default: sbs)")
    g.add_argument("--frames", type=_frames, metavar="A:B",
                   help="frames A to B of the source, numbered from 1, inclusive (A: or :B for open ends)")
    g.add_argument("--fps", type=_positive, help="frames per second of the output (default: the source's, or 24)")
    g.add_argument("--codec", choices=tuple(CODECS), default="h264",
                   help="video codec: h264, h265 (8-bit), h265-10 (10-bit Main 10), prores (ProRes 422 HQ) or "
                        "prores4444 (ProRes 4444), for editorial; a video source's audio is copied into every "
                        "video (default: %(default)s)")
    g.add_argument("--crf", type=int, default=18,
                   help="video quality, 0 lossless .. 51 worst; not used by ProRes (default: 18)")
    g.add_argument("--container", choices=VIDEO_CONTAINERS,
                   help="the videos' file type: mkv also carries Matroska's StereoMode, for any codec "
                        "(default: mov for ProRes, else mp4)")
    g.add_argument("--vr-tags", action="store_true",
                   help="end the videos' names with the tags VR players read the layout from: "
                        + ", ".join(f"{tag} ({layout})" for layout, tag in VR_TAGS.items()))
    g.add_argument("--no-cloud", dest="cloud", action="store_false",
                   help="do not write the USD point clouds (faster, less disk)")
    g.add_argument("--cloud-stride", type=int, default=2, metavar="N",
                   help="keep every N-th pixel in each direction in cloud.usdc (default: 2; 1 for Blender renders "
                        "at full resolution)")
    g.add_argument("--device", default="auto", help="torch device for splatting: auto, cpu, cuda (default: auto)")
    g.add_argument("--batch", type=int, default=4, metavar="N", help="frames splatted together (default: 4)")
    g.add_argument("--stages", type=_layouts, metavar="STAGE[,STAGE...]",
                   help="run only these of ingest, cloud, eyes, inpaint, composite, encode (default: all); the "
                        "others' files must be there already, e.g. eyes rendered by Blender")
    g = p.add_argument_group("job server")
    g.add_argument("--server", metavar="URL",
                   help="run the job on a StereoForge server ('stereoforge serve') instead of here, e.g. "
                        "http://gpubox:8765; paths are the server's, relative ones under its --root")
    g.add_argument("--token", metavar="T", help="the server's token, if it was started with one")
    add_progress_options(p)


def add_progress_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--progress", choices=("bar", "json", "none"), default="bar",
                   help="bar: a progress bar per stage on a terminal (silent when piped); json: one JSON object "
                        "per line on stdout, {\"stage\", \"done\", \"total\"}, for other programs; none "
                        "(default: bar)")
    p.add_argument("-q", "--quiet", action="store_const", const="none", dest="progress",
                   help="same as --progress none")


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


def _json_progress(stage: str, done: int, total: int) -> None:
    print(json.dumps({"stage": stage, "done": done, "total": total}), flush=True)


def _spec_from_args(args: argparse.Namespace, source: str, output: str) -> ConvertSpec:
    return ConvertSpec(
        source=source, output_dir=output, depth=args.depth, depth_kind=args.depth_kind,
        depth_scale=args.depth_scale, near=args.near, far=args.far, baseline=args.baseline,
        depth_smoothing=args.depth_smoothing, depth_edge_radius=args.depth_edge_radius, focal_px=args.focal_px,
        hfov=args.hfov,
        interocular=args.interocular, convergence_distance=args.convergence_distance,
        convergence_mode=args.convergence_mode, pivot=args.pivot, max_parallax=args.max_parallax,
        interocular_curve=args.interocular_curve, convergence_curve=args.convergence_curve,
        max_parallax_curve=args.max_parallax_curve, max_far_parallax=args.max_far_parallax,
        screen_width=args.screen_width, floating_window=args.floating_window,
        inpaint=args.inpaint, layouts=args.layout, frames=args.frames, fps=args.fps, codec=args.codec,
        crf=args.crf, container=args.container, vr_tags=args.vr_tags, cloud=args.cloud,
        cloud_stride=args.cloud_stride, device=args.device, batch=args.batch,
        stages=args.stages, depth_model=args.depth_model)


def _run(spec: ConvertSpec, progress: str) -> dict:
    from .pipeline import convert

    bars = _Bars(progress != "bar")
    # Notices (a stage remade because its settings changed) are rare and matter on a farm: never silenced.
    log = (lambda m: print(m, file=sys.stderr)) if progress != "json" else (
        lambda m: print(json.dumps({"event": "notice", "message": m}), flush=True))
    try:
        return convert(spec, progress=_json_progress if progress == "json" else bars, log=log)
    finally:
        bars.close()


def _report(result: dict, started: float, progress: str = "bar") -> None:
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


def cmd_convert(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    spec = generate.with_model_options(_spec_from_args(args, args.source, args.output), args)
    if args.server:
        result = run_on_server(args, "convert", spec.to_dict())
    else:
        result = _run(spec, args.progress)
    _report(result, started, args.progress)
    return 0


def run_on_server(args: argparse.Namespace, kind: str, body: dict) -> dict:
    """A job run by ``--server URL``, with the same progress display as a local run."""
    from .remote import run_remote

    bars = _Bars(args.progress != "bar")
    log = (lambda m: print(m, file=sys.stderr)) if args.progress != "json" else (
        lambda m: print(json.dumps({"event": "notice", "message": m}), flush=True))
    try:
        return run_remote(args.server, args.token, kind, body,
                          _json_progress if args.progress == "json" else bars, log)
    finally:
        bars.close()


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import demo_spec

    started = time.perf_counter()
    spec = demo_spec(args.output)
    result = _run(spec, args.progress)
    _report(result, started)
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
    add_convert_options(p)
    generate.add_model_options(p)
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
    bench.register(sub)
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
        return 2
    except Cancelled as exc:
        print(f"stereoforge: {exc}", file=sys.stderr)
        return 130
    except StereoForgeError as exc:
        print(f"stereoforge: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        how, status = ("stopped by SIGTERM", 128 + signal.SIGTERM) if isinstance(exc, Terminated) else (
            "interrupted", 130)
        print(f"stereoforge: {how}; finished frames are kept, run the same command again to resume",
              file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

