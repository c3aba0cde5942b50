"""``stereoforge models``: the video, depth and inpainting models this machine has, by stage
(:mod:`stereoforge.models.registry`)."""

from __future__ import annotations

import argparse
import json

from ..models.registry import STAGES, by_stage, scan


def register(sub) -> None:
    """The ``models`` subcommand."""
    p = sub.add_parser("models", help="list the video, depth and inpainting models available on this machine",
                       description="List the models this machine has, by stage, from the Hugging Face cache and "
                                   "from model folders (--dir, and STEREOFORGE_MODELS). Pass an id or folder "
                                   "shown here as --video-model, --depth-model or --inpaint-model.")
    p.add_argument("--dir", action="append", default=[], metavar="FOLDER",
                   help="a model folder, or a folder of model folders (repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON ({stage: [model, ...]}) for other programs")
    p.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    models = scan(args.dir)
    if args.json:
        print(json.dumps(by_stage(models), indent=2))
        return 0
    for stage in STAGES:
        print(f"{stage}:")
        listed = [m for m in models if m.stage == stage]
        for m in listed:
            detail = f", {m.detail}" if m.detail else ""
            print(f"  {m.id}  ({m.class_name}{detail}; {m.where}: {m.path})")
        if not listed:
            print("  (none found)")
    return 0
