"""Encode the same frames again and again with :class:`stereoforge.io.video.VideoWriter`, every core kept busy,
and print how many different files came out per codec, and the encode time per frame.

A video must have the same bytes from the same frames every time (a resumed shot, a farm's chunks, two runs);
a race or an unstable instruction path in FFmpeg or an encoder shows as a second digest, often only under load::

    PYTHONPATH=backend python tools/encode_repeat.py --runs 40 --size 600x160
    PYTHONPATH=backend python tools/encode_repeat.py --runs 3 --size 1708x480 --codecs h264 --idle

One line per codec: ``CODEC runs N distinct D ms/frame T`` (T the fastest run's time per frame, with the
spinning processes running unless ``--idle``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from stereoforge.io.video import CODECS, VideoWriter


def clip(width: int, height: int, count: int) -> list[np.ndarray]:
    """Colour noise over a horizontal ramp, panning: every frame different, nothing an encoder can skip."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 128, (height, width, 3), dtype=np.uint8)
    ramp = np.linspace(0, 120, width, dtype=np.float32)[None, :, None]
    base = (noise + ramp).astype(np.uint8)
    return [np.roll(base, 3 * k, axis=1) for k in range(count)]


def encode(path: Path, codec: str, frames: list[np.ndarray]) -> tuple[str, float]:
    """The file's SHA-256 and the seconds per frame it took."""
    height, width = frames[0].shape[:2]
    start = time.perf_counter()
    with VideoWriter(path, width, height, 24, codec=codec, stereo="sbs") as video:
        for rgb in frames:
            video.write(rgb)
    seconds = (time.perf_counter() - start) / len(frames)
    return hashlib.sha256(path.read_bytes()).hexdigest(), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="encodes per codec")
    parser.add_argument("--frames", type=int, default=8, help="frames per encode")
    parser.add_argument("--size", default="600x160", help="WIDTHxHEIGHT")
    parser.add_argument("--codecs", default=",".join(CODECS), help="comma-separated codec names")
    parser.add_argument("--idle", action="store_true", help="do not spin the cores")
    args = parser.parse_args()
    width, height = (int(n) for n in args.size.split("x"))
    frames = clip(width, height, args.frames)
    spinners = [] if args.idle else [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                                     for _ in os.sched_getaffinity(0)]
    try:
        with tempfile.TemporaryDirectory() as folder:
            for codec in args.codecs.split(","):
                ext = CODECS[codec].containers[0]
                results = [encode(Path(folder) / f"clip{ext}", codec, frames) for _ in range(args.runs)]
                digests = {digest for digest, _ in results}
                fastest = min(seconds for _, seconds in results)
                print(f"{codec} runs {args.runs} distinct {len(digests)} ms/frame {fastest * 1000:.1f}", flush=True)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


if __name__ == "__main__":
    main()
