"""``stereoforge generate PROMPT -o SHOT ...``: a prompt (and optionally a first frame) -> a stereo shot
(:func:`stereoforge.generate.generate`): the video model's options, then every convert option."""

from __future__ import annotations

import argparse
import time

from ..errors import InputError
from ..generate import DEFAULT_DEPTH_MODEL, SET_BY_GENERATE, GenerateSpec, generate
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

#: Options of convert that generate refuses on its command line, and why.
_REFUSED = {
    "depth": "generate estimates the depth with --depth-model; --depth is for convert",
    "frames": "generate's --frames is now --num-frames N, the frames to make (the server's num_frames); --frames "
              "A:B is convert's range of a source's frames",
}


def register(sub) -> None:
    """The ``generate`` subcommand."""
    p = sub.add_parser(
        "generate", help="a prompt (and optionally a first frame) -> a stereo shot",
        description="Make a mono video with a diffusers text-to-video or image-to-video pipeline, estimate its "
                    "depth with a depth model, and convert it into a stereo shot folder: generated/ (the "
                    "video's frames), estimated_depth/, then everything convert writes. Re-running resumes.")
    p.add_argument("prompt", metavar="PROMPT", help="what the video shows (\"\" for image-only pipelines)")
    p.add_argument("-o", "--output", required=True, metavar="SHOT_DIR", help="the shot folder to write")
    g = p.add_argument_group("video model")
    g.add_argument("--video-model", required=True, metavar="MODEL",
                   help="a Hugging Face id or a local folder of a diffusers text-to-video or image-to-video "
                        "pipeline: Wan 2.x, CogVideoX, LTX-Video, HunyuanVideo, zeroscope...")
    g.add_argument("--image", metavar="FILE", help="the first frame, for image-to-video pipelines")
    g.add_argument("--video-only", action="store_true",
                   help="make the video only (SHOT_DIR/generated/ and shot.json: a take), no depth, no stereo")
    g.add_argument("--negative-prompt", metavar="TEXT", help="what the video should not show")
    g.add_argument("--num-frames", type=int, metavar="N",
                   help="frames to make (default: the model's; Wan makes 4k+1, LTX 8k+1)")
    g.add_argument("--height", type=int, metavar="PX", help="frame height (default: the model's)")
    g.add_argument("--width", type=int, metavar="PX", help="frame width (default: the model's)")
    g.add_argument("--steps", type=int, metavar="N", help="denoising steps (default: the model's)")
    g.add_argument("--guidance", type=float, metavar="G", help="classifier-free guidance scale (default: the model's)")
    for name in _REFUSED:
        p.add_argument(f"--{name}", help=argparse.SUPPRESS)
    add_spec_options(p, skip=SET_BY_GENERATE, defaults={"depth_model": DEFAULT_DEPTH_MODEL})
    add_job_options(p)
    p.set_defaults(func=cmd_generate)


def spec_from_args(args: argparse.Namespace) -> GenerateSpec:
    for name, why in _REFUSED.items():
        if getattr(args, name) is not None:
            raise InputError(why)
    options = ConvertSpec(source="", output_dir=args.output, **spec_values(args, skip=SET_BY_GENERATE))
    return GenerateSpec(prompt=args.prompt, output_dir=args.output, video_model=args.video_model, image=args.image,
                        negative_prompt=args.negative_prompt, num_frames=args.num_frames, height=args.height,
                        width=args.width, steps=args.steps, guidance=args.guidance, video_only=args.video_only,
                        options=options)


def cmd_generate(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    check_run_options(args)
    spec = spec_from_args(args)
    if args.server:
        result = run_on_server(args, "generate", spec.to_dict())
    else:
        result = run_job(lambda progress, log: generate(spec, progress=progress, log=log, ray=args.ray),
                         args.progress)
    report(result, started, args.progress)
    if args.progress != "json" and not args.server:
        print(f"seed: {result['generate']['seed']} (recorded in shot.json)")
    return 0
