"""``stereoforge serve --root DIR``: the job server (:func:`stereoforge.server.create_app`) on uvicorn, for the
Blender add-on (which starts one on loopback as its local backend) and for pipelines."""

from __future__ import annotations

import argparse
import os
import threading

from .. import __version__
from ..errors import InputError
from ..server import DEFAULT_PORT, create_app, is_loopback
from .console import add_ray_option


def check_host(host: str, token: str | None) -> None:
    """A server that other machines can reach takes jobs only from clients that know its token."""
    if not is_loopback(host) and not token:
        raise InputError(f"--host {host} would let other machines send jobs; give a --token (or set "
                         "STEREOFORGE_TOKEN) so that only clients that know it can, or bind to 127.0.0.1")


def register(sub) -> None:
    """The ``serve`` subcommand."""
    p = sub.add_parser("serve", help="run the job server (for the Blender add-on and pipelines)",
                       description="Serve convert and generate jobs over HTTP, one at a time in a worker process "
                                   "that keeps models loaded. Every folder a job writes lies inside --root.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: %(default)s, this machine only; another address needs "
                        "--token)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default: %(default)s)")
    p.add_argument("--root", required=True, metavar="DIR",
                   help="the folder jobs write into (output_dir is relative to it); relative inputs are read "
                        "from it too")
    p.add_argument("--token", default=os.environ.get("STEREOFORGE_TOKEN"),
                   help="require 'Authorization: Bearer TOKEN' on every request (default: $STEREOFORGE_TOKEN)")
    p.add_argument("--read-root", action="append", default=[], metavar="DIR",
                   help="also let jobs read their inputs (source, depth, image) from DIR; repeat for more "
                        "(default: inputs only from --root)")
    p.add_argument("--models-dir", action="append", default=[], metavar="FOLDER",
                   help="also list the models in FOLDER at GET /models (ROOT/models always is), and let jobs "
                        "load model folders from it (default: model folders only from --root)")
    p.add_argument("--allow-remote-code", action="store_true",
                   help="let jobs ask for trust_remote_code (models that run code from their repository)")
    p.add_argument("--stop-with-stdin", action="store_true",
                   help="stop when standard input closes: a program that starts the server as its child (the "
                        "Blender add-on) keeps a pipe open, so the server stops with it even if it crashes")
    add_ray_option(p.add_argument_group("Ray"),
                   "hand each job's convert work to a Ray cluster, spread as 'convert --ray' spreads it (the "
                   "worker joins the cluster at its first job). Alone: a cluster of this machine's cores")
    p.set_defaults(func=cmd_serve)


def _stop_with_stdin() -> None:
    """Stop (as on Ctrl-C: the worker stops, the models' memory is freed) once standard input reaches its end."""
    import signal
    import sys

    def watch() -> None:
        while sys.stdin.buffer.read(4096):
            pass
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, name="stereoforge-stdin", daemon=True).start()


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    check_host(args.host, args.token)
    if args.stop_with_stdin:
        _stop_with_stdin()
    if not os.path.isdir(args.root):
        raise InputError(f"--root '{args.root}' is not a folder; create it first")
    for folder in args.read_root:
        if not os.path.isdir(folder):
            raise InputError(f"--read-root '{folder}' is not a folder; give a folder that holds the inputs")
    if args.ray:
        from ..farm import check_address

        check_address(args.ray)
    app = create_app(args.root, token=args.token, model_dirs=tuple(args.models_dir),
                     allow_remote_code=args.allow_remote_code, read_roots=tuple(args.read_root), ray=args.ray)
    print(f"stereoforge {__version__} serving jobs under '{os.path.realpath(args.root)}' at "
          f"http://{args.host}:{args.port} ({'token required' if args.token else 'no token'})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
