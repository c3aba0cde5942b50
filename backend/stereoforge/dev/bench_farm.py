"""``stereoforge bench farm``: one shot on a local Ray cluster of 1 and of 2 workers (one thread each), the
speed-up, and whether the files are the same.

    stereoforge bench farm [--height 480 --width 854 --frames 48] [--workers 1,2] [--repeat 3] [--inpaint NAME]
                           [--json]

The clip is ``bench pipeline``'s synthetic one (a video with moving objects and relative depth). It is converted
by one process (``convert``, its threads as usual) unless ``--no-single``, then on a fresh local cluster of each
worker count (``convert --ray``), in ``--repeat`` rounds that run each once (each one's best run counts; a
machine that others share disturbs them alike), and every run's shot folder is compared file by file (SHA-256;
shot.json without its ``created`` time). A run's seconds count from the plan to the last video; the cluster's
start and its warm-up (a small clip converted first: the workers' start, their imports of torch and
stereoforge, the compiled kernels; paid once per cluster) are timed apart.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
import time

from ..errors import InputError
from ..inpaint import DEFAULT_INPAINTER, INPAINTERS
from ..shot import SHOT_JSON
from .bench import FAR, NEAR, _size_options, write_synthetic_clip


def shot_digest(shot: str) -> dict[str, str]:
    """Every file of a shot folder -> its SHA-256 (shot.json: of its content without the ``created`` time)."""
    digest = {}
    for parent, _, names in os.walk(shot):
        for name in names:
            path = os.path.join(parent, name)
            with open(path, "rb") as f:
                data = f.read()
            if os.path.relpath(path, shot) == SHOT_JSON:
                record = json.loads(data)
                record.pop("created", None)
                data = json.dumps(record, sort_keys=True).encode()
            digest[os.path.relpath(path, shot)] = hashlib.sha256(data).hexdigest()
    return digest


def _warm(spec, workers: int) -> None:
    """Convert a small clip on the cluster first, so that every worker has started, imported torch and
    stereoforge and loaded the compiled kernels, as they have once a cluster has run a job."""
    import dataclasses

    from .. import farm

    with tempfile.TemporaryDirectory(prefix="stereoforge-warm-") as folder:
        video, depth = write_synthetic_clip(folder, spec.batch * workers, 72, 128)
        farm.convert(dataclasses.replace(spec, source=video, depth=depth, output_dir=os.path.join(folder, "shot")))


def _on_ray(spec, workers: int) -> dict:
    """One run on a fresh local cluster of ``workers``, timed from the plan to the last video (its start and
    warm-up apart)."""
    import ray

    from .. import farm

    started = time.perf_counter()
    farm.connect(farm.LOCAL, workers=workers)
    _warm(spec, workers)
    ready = time.perf_counter()
    try:
        result = farm.convert(spec)
        seconds = time.perf_counter() - ready
    finally:
        ray.shutdown()
    return {"start_seconds": ready - started, "seconds": seconds, "timings": result["timings"],
            "tasks": result["tasks"]}


def _in_one_process(spec) -> dict:
    from ..pipeline import convert

    started = time.perf_counter()
    result = convert(spec)
    return {"start_seconds": 0.0, "seconds": time.perf_counter() - started, "timings": result["timings"]}


def _ray_run(workers: int) -> str:
    """A run's name in the table."""
    return f"Ray, {workers} worker{'s' if workers > 1 else ''}"


def bench_farm(height: int = 480, width: int = 854, frames: int = 48, workers: tuple[int, ...] = (1, 2),
               inpaint: str = DEFAULT_INPAINTER, single: bool = True, workdir: str | None = None,
               keep: bool = False, batch: int = 4, device: str = "cpu", repeat: int = 3) -> dict:
    """Convert one synthetic clip in one process (``single``) and on local Ray clusters of each of ``workers``,
    ``repeat`` times each, in rounds (each round runs every one once, so that a machine that others share
    disturbs them alike); returns ``runs`` (name -> ``start_seconds``, ``seconds``, ``timings`` by stage and, on
    Ray, ``tasks``, of its best run, and ``all_seconds``), ``speed_up`` (the first worker count's best seconds
    over the last's), ``identical`` (every run's shot folder the same bytes) and ``files``."""
    from ..spec import ConvertSpec

    for name, value in (("--height", height), ("--width", width), ("--frames", frames), ("--batch", batch),
                        ("--repeat", repeat)):
        if value < 1:
            raise InputError(f"{name} {value} is not valid; give 1 or more")
    if not workers or min(workers) < 1:
        raise InputError(f"--workers {','.join(map(str, workers))} is not valid; give counts of 1 or more, e.g. 1,2")
    height, width = height + height % 2, width + width % 2  # H.264 takes even sizes
    root = tempfile.mkdtemp(prefix="stereoforge-bench-farm-", dir=workdir)
    shot = os.path.join(root, "shot")
    runs: dict[str, dict] = {}
    digests: list[dict] = []
    try:
        video, depth = write_synthetic_clip(root, frames, height, width)
        spec = ConvertSpec(source=video, output_dir=shot, depth=depth, depth_kind="relative", near=NEAR, far=FAR,
                           inpaint=inpaint, device=device, batch=batch)
        plan = ([("one process", _in_one_process, ())] if single else []) + [
            (_ray_run(n), _on_ray, (n,)) for n in workers]
        every: dict[str, list[float]] = {name: [] for name, _, _ in plan}
        for round_ in range(repeat):
            for name, run, extra in plan:
                result = run(spec, *extra)
                every[name].append(result["seconds"])
                if name not in runs or result["seconds"] < runs[name]["seconds"]:
                    runs[name] = result
                digests.append(shot_digest(shot))
                # The next run writes the same path: the videos are named after the folder, shot.json records
                # it. The first round's shots are kept (--keep), the later ones go.
                if round_ == 0:
                    os.rename(shot, os.path.join(root, f"run{len(digests)}"))
                else:
                    shutil.rmtree(shot)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    for name, run in runs.items():
        run["all_seconds"] = every[name]
    first, last = (runs[_ray_run(n)]["seconds"] for n in (workers[0], workers[-1]))
    reference = digests[0]
    report = {"frames": frames, "height": height, "width": width, "device": device, "batch": batch,
              "inpaint": inpaint, "workers": list(workers), "repeat": repeat,
              "runs": runs, "speed_up": first / last, "files": len(reference),
              "identical": all(d == reference for d in digests)}
    if keep:
        report["workdir"] = root
    return report


def cmd_farm(args: argparse.Namespace) -> int:
    r = bench_farm(args.height, args.width, args.frames, args.workers, args.inpaint, not args.no_single,
                   args.workdir, args.keep, args.batch, args.device, args.repeat)
    # One process runs eyes, inpaint and composite as one step (frames handed over in memory), Ray as three.
    stages = list(dict.fromkeys(stage for run in r["runs"].values() for stage in run["timings"]))
    seconds = lambda run, stage: f"{run['timings'][stage]:9.2f}" if stage in run["timings"] else f"{'-':>9}"
    print(f"convert, {r['frames']} frames at {r['width']}x{r['height']} on {r['device']} (batch {r['batch']}), "
          f"inpaint {r['inpaint']}; Ray workers of one thread each (seconds, the best of {r['repeat']} runs):")
    print(f"  {'run':<16} {'start':>6} {'total':>7}  " + " ".join(f"{stage:>9}" for stage in stages))
    for name, run in r["runs"].items():
        start = f"{run['start_seconds']:6.1f}" if name.startswith("Ray") else f"{'-':>6}"
        print(f"  {name:<16} {start} {run['seconds']:7.1f}  "
              + " ".join(seconds(run, stage) for stage in stages))
    low, high = r["workers"][0], r["workers"][-1]
    slow, fast = (r["runs"][_ray_run(n)] for n in (low, high))
    print(f"  {f'speed-up {high}/{low}':<23} {r['speed_up']:7.2f}x "
          + " ".join(f"{slow['timings'][stage] / max(fast['timings'][stage], 1e-9):8.2f}x"
                     if stage in slow["timings"] else f"{'-':>9}" for stage in stages))
    runs = ", ".join(r["runs"])
    print(f"  files identical: {'yes' if r['identical'] else 'NO'} ({r['files']} files; every run of {runs})")
    if r["repeat"] > 1:
        every = (f"{name} " + " ".join(f"{seconds:.1f}" for seconds in run["all_seconds"])
                 for name, run in r["runs"].items())
        print("  every run's seconds: " + "; ".join(every))
        rounds = zip(slow["all_seconds"], fast["all_seconds"], strict=True)
        print(f"  speed-up {high}/{low} by round: " + " ".join(f"{a / b:.2f}x" for a, b in rounds))
    _print_cpu(r)
    _print_schedule(r["runs"][_ray_run(high)])
    if "workdir" in r:
        print(f"  clip and shots kept in {r['workdir']}")
    if args.json:
        print(json.dumps(r))
    return 0 if r["identical"] else 1


def _print_cpu(r: dict) -> None:
    """The CPU seconds of each Ray run's tasks by stage (all tasks, and the longest: the stage's critical path
    when it has no more tasks than workers), and the speed-up they give: what a machine that others share lets
    one measure, where the clock is disturbed. The stages that overlap (the point clouds beside the eyes, the
    encoding beside the later composite parts) are added one after the other: the seconds are an upper bound."""
    print("  CPU seconds of the tasks by stage (all / longest), and the seconds they take on the run's workers:")
    estimates = {}
    for n in r["workers"]:
        cpu = {label: [task["cpu"] for task in tasks] for label, tasks in r["runs"][_ray_run(n)]["tasks"].items()}
        estimates[n] = sum(max(max(parts), sum(parts) / n) for parts in cpu.values())
        print(f"  {_ray_run(n):<16} {estimates[n]:14.1f}  "
              + " ".join(f"{stage} {sum(parts):.1f}/{max(parts):.1f}" for stage, parts in cpu.items()))
    low, high = r["workers"][0], r["workers"][-1]
    print(f"  {f'CPU-bound speed-up {high}/{low}':<30} {estimates[low] / estimates[high]:.2f}x (stages that overlap "
          "counted one after the other; the driver and Ray's scheduling not counted)")


def _print_schedule(run: dict) -> None:
    """When each task of a Ray run ran, worker by worker (seconds since the tasks were submitted; wall and CPU
    seconds): where a worker waited, and which task ends last."""
    tasks = sorted(((task, label) for label, group in run["tasks"].items() for task in group),
                   key=lambda item: item[0]["start"])
    workers = list(dict.fromkeys(task["worker"] for task, _ in tasks))
    print(f"  schedule of the {len(workers)}-worker run (start-end s, CPU s):")
    for number, worker in enumerate(workers, 1):
        print(f"    worker {number}: " + "  ".join(f"{label} {task['start']:.1f}-{task['end']:.1f} ({task['cpu']:.1f})"
                                              for task, label in tasks if task["worker"] == worker))


def _counts(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of worker counts, e.g. 1,2") from None


def register(bench_subparsers) -> None:
    """Add ``farm`` to the sub-commands of ``stereoforge bench``."""
    p = bench_subparsers.add_parser(
        "farm", help="one shot on a local Ray cluster of 1 and of 2 workers: speed-up and identical files",
        description="Convert a synthetic clip in one process and on a fresh local Ray cluster of each worker "
                    "count (workers of one thread each, as convert --ray runs them); print the seconds per run "
                    "and per stage, the speed-up, and whether the shot folders hold the same bytes.")
    _size_options(p, frames=48)
    p.add_argument("--workers", type=_counts, default=(1, 2), metavar="N[,N...]",
                   help="worker counts, one cluster each; the speed-up is the first's seconds over the last's "
                        "(default: 1,2)")
    p.add_argument("--inpaint", choices=tuple(sorted(INPAINTERS)), default=DEFAULT_INPAINTER,
                   help="the inpainter, as convert --inpaint (default: %(default)s)")
    p.add_argument("--repeat", type=int, default=3, metavar="N",
                   help="rounds, each running every configuration once; each one's best run counts, the least "
                        "disturbed on a shared machine (default: %(default)s)")
    p.add_argument("--no-single", action="store_true", help="skip the run in one process")
    p.add_argument("--workdir", metavar="DIR", help="where to write the clip and the shots (default: a temporary "
                                                     "folder)")
    p.add_argument("--keep", action="store_true", help="keep the clip and the shot folders")
    p.set_defaults(func=cmd_farm)
