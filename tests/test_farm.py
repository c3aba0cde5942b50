"""A shot spread over processes gives the files one process writes: over a local Ray cluster (``convert --ray``,
:mod:`stereoforge.farm`), and as a farm manager's tasks (``convert --prepare``, ``--chunk A:B``, then the plain
command). A Ray worker killed mid-stage is retried and its stage resumes; bad ``--ray`` and ``--chunk`` values are
one line and exit status 2.

One local Ray cluster of two workers serves the module. The clip: 24 frames of 128x72 with moving objects and
relative depth (the benchmark's synthetic clip), the default inpainter, two layouts (two videos).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import ray

from stereoforge import farm, pipeline
from stereoforge.cli import main
from stereoforge.dev.bench import write_synthetic_clip
from stereoforge.errors import Cancelled
from stereoforge.inpaint import INPAINTERS, PerFrame, fill_telea
from stereoforge.pipeline import convert
from stereoforge.server import run_job
from stereoforge.shot import EYES, INTERMEDIATES
from stereoforge.spec import ConvertSpec
from stereoforge.stages import Job
from stereoforge.stages.encode import _CompositeFrames

FRAMES, H, W = 24, 72, 128
LAYOUTS = ("sbs", "anaglyph")
#: Every intermediate a shot can keep (stereoforge.shot.INTERMEDIATES).
KEEP = tuple(INTERMEDIATES)
BACKEND = str(Path(__file__).resolve().parents[1] / "backend")


# ------------------------------------------------------------------------------------------------ helpers


#: The records' times, by file and key path: what differs between two runs of the same command.
TIMES = {"shot.json": (("created",),)}
GENERATE_TIMES = {"shot.json": (("created",), ("generate", "created"), ("generate", "seconds")),
                  "estimated_depth/model.json": (("created",),)}


def shot_files(shot: Path, times: dict = TIMES) -> dict[str, str]:
    """Every file of a shot folder -> its SHA-256; the records in ``times`` as their content without the times."""
    files = {p.relative_to(shot).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(shot.rglob("*")) if p.is_file()}
    for name, keys in times.items():
        record = json.loads((shot / name).read_text())
        for *parents, key in keys:
            inner = record
            for parent in parents:
                inner = inner[parent]
            del inner[key]
        files[name] = json.dumps(record, sort_keys=True)
    return files


def assert_same_files(shot: Path, reference: dict[str, str]) -> None:
    files = shot_files(shot)
    assert sorted(files) == sorted(reference)
    assert [name for name in files if files[name] != reference[name]] == []


class Work:
    """The module's clip and its shot folder: every run writes ``<root>/shot`` (the videos are named after the
    folder and shot.json records its path, so runs to compare write the same path), moved aside after."""

    def __init__(self, root: Path):
        self.root = root
        self.video, self.depth = write_synthetic_clip(str(root), FRAMES, H, W)
        self.shot = root / "shot"

    def spec(self, **options) -> ConvertSpec:
        """The shot's settings; every intermediate kept (eyes, masks, fills), so that comparisons cover them."""
        return ConvertSpec(source=self.video, output_dir=str(self.shot), depth=self.depth, layouts=LAYOUTS,
                           **{"keep": KEEP, **options})

    def args(self) -> list[str]:
        """``stereoforge convert``'s arguments for the same shot."""
        return [self.video, "--depth", self.depth, "-o", str(self.shot), "--layout", ",".join(LAYOUTS),
                "--keep", ",".join(KEEP), "-q"]

    def set_aside(self, name: str) -> Path:
        target = self.root / name
        os.rename(self.shot, target)
        return target


def stereoforge_tasks() -> list[int]:
    """Process ids of the Ray workers of this test run (:func:`ours`) running a stereoforge task now: Ray titles
    a worker's process ``ray::`` and the task's name while it runs one (``stereoforge.<stage>``)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            title = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if title.startswith(b"ray::stereoforge.") and ours(int(entry)):
            pids.append(int(entry))
    return pids


def ours(pid: int) -> bool:
    """Whether process ``pid`` descends from this one: a worker of the local cluster this process (or a command
    it runs) started, not one of another run on the same machine (a benchmark, say), which the tests must leave
    alone."""
    try:
        while pid > 1:
            if pid == os.getpid():
                return True
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])  # its parent
    except OSError:  # it ended
        pass
    return False


def cli(*args: str) -> int:
    """``stereoforge ARGS`` in-process: its exit status (argparse's refusals exit by SystemExit)."""
    try:
        return main(list(args))
    except SystemExit as exc:
        return exc.code


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Work:
    return Work(tmp_path_factory.mktemp("farm"))


@pytest.fixture(scope="module")
def single(work) -> dict[str, str]:
    """The files of the shot made by one process."""
    convert(work.spec())
    return shot_files(work.set_aside("single"))


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of two workers, for the module."""
    farm.connect(farm.LOCAL, workers=2)
    yield
    ray.shutdown()


# ------------------------------------------------------------------------------------------------ tests


def test_frame_ranges_are_contiguous_whole_batches():
    assert farm.frame_ranges(24, 2, 4) == [(1, 12), (13, 24)]
    assert farm.frame_ranges(10, 3, 4) == [(1, 4), (5, 8), (9, 10)]
    assert farm.frame_ranges(5, 8) == [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)]
    assert farm.frame_ranges(3, 2, 4) == [(1, 3)]


def test_ray_run_gives_the_bytes_of_one_process(cluster, work, single):
    result = farm.convert(work.spec())
    assert [Path(v).name for v in result["videos"]] == ["shot_sbs.mp4", "shot_anaglyph.mp4"]
    # Each eye splatted and filled in a task of its own, in memory; composite by frame ranges.
    assert list(result["timings"]) == ["plan", "ingest", "cloud", "eyes+inpaint", "composite", "encode"]
    assert sum(name.startswith("filled/") for name in single) == 2 * FRAMES
    assert_same_files(work.set_aside("ray"), single)


def test_a_ray_run_that_keeps_no_intermediates_leaves_the_files_of_one_process(cluster, work):
    """Ray's tasks hand frames over through eyes/, masks/ and filled/; without --keep those go at the end, as
    one process (which hands them over in memory) never writes them."""
    convert(work.spec(keep=None))
    alone = shot_files(work.set_aside("single-no-keep"))
    farm.convert(work.spec(keep=None))
    on_ray = shot_files(work.set_aside("ray-no-keep"))
    assert not [name for name in alone if name.split("/")[0] in ("eyes", "masks", "filled")]
    assert on_ray == alone


def test_server_hands_its_convert_jobs_to_ray(cluster, work, single):
    """``stereoforge serve --ray``: the worker runs a job's convert part on the cluster."""
    stages = set()
    result = run_job("convert", work.spec().to_dict(), lambda stage, done, total: stages.add(stage), lambda: False,
                     lambda message: None, ray=farm.LOCAL)
    assert stages == {"depth range", "source check", "ingest", "cloud", "eyes+inpaint", "composite", "encode"}
    assert len(result["videos"]) == 2
    assert_same_files(work.set_aside("served"), single)


def test_generate_runs_its_convert_part_on_ray(cluster, tmp_path, capsys):
    """``generate --ray``: the video and its depth are made here, the stereo shot on the cluster, a model filling
    each eye in a task of its own; the shot holds the bytes of the same generate without --ray."""
    pytest.importorskip("diffusers")
    import tiny_models

    models = tmp_path / "models"
    args = ["generate", "a cat", "--video-model", tiny_models.text_to_video_sd(models / "video"),
            "--depth-model", tiny_models.depth_anything(models / "depth"),
            "--inpaint-model", tiny_models.sd_inpaint(models / "inpaint"), "--inpaint-steps", "1",
            "--num-frames", "3", "--height", "32", "--width", "48", "--steps", "2", "--seed", "7",
            "--device", "cpu", "-o", str(tmp_path / "shot"), "-q"]
    shots = {}
    for name, extra in (("here", []), ("ray", ["--ray"])):
        assert main([*args, *extra]) == 0
        os.rename(tmp_path / "shot", tmp_path / name)
        shots[name] = shot_files(tmp_path / name, GENERATE_TIMES)
    capsys.readouterr()
    assert sum(name.startswith("filled/") for name in shots["here"]) == 6
    assert shots["ray"] == shots["here"]


def test_encode_makes_the_composite_frames_it_finds_missing(work, single):
    """A farm's encode task starts once the first composite part is done (``Job.compose``): the frames that the
    other parts have not made yet it makes itself, from filled/, but a frame a composite task is making beside it
    it waits for, making the shot's last frames meanwhile; the shot is the bytes of one process."""
    job, _ = pipeline.prepare(work.spec(), None, None, None)
    for group in (("ingest",), ("cloud",), ("eyes",), ("inpaint",)):
        pipeline.run_group(job.plan, group, KEEP)
    pipeline.run_group(job.plan, ("composite",), KEEP, chunk=(1, 6))
    frame = lambda n: work.shot / "out" / "frames" / "sbs" / f"sbs_{n:06d}.png"
    assert not frame(7).exists()
    # Right after a frame another task made, the next one is waited for while a composite task makes it...
    frames = _CompositeFrames(Job(job.plan, compose=True))
    frames.patience = 30.0  # what a busy machine may take to start the composite task below
    assert frames.path("sbs", 6) == str(frame(6))
    found_missing = []

    def composite_task() -> None:
        while not frame(FRAMES - 1).exists():  # meanwhile the encoder makes the last frames, from the end
            time.sleep(0.01)
        found_missing.append(not frame(7).exists())
        pipeline.run_group(job.plan, ("composite",), KEEP, chunk=(7, 7))

    task = threading.Thread(target=composite_task)
    task.start()
    assert frames.path("sbs", 7) == str(frame(7))
    task.join()
    assert found_missing == [True]  # ...not composed twice
    assert frame(FRAMES).exists() and FRAMES - 1 >= frames.made_last > 7 + 2  # the last ones, from the end
    # ...a frame no task makes is made here after that wait, and the ones after it at once.
    frames.patience = 0.2
    for n in (8, 9):
        assert frames.path("sbs", n) == str(frame(n)) and frames.made_last == n
    assert not frames.others_made_last
    assert len(pipeline.run_group(job.plan, ("encode",), KEEP, compose=True)) == 2
    assert_same_files(work.set_aside("composed-by-encode"), single)


def test_a_chunk_with_a_frame_by_frame_inpainter_fills_only_its_own_frames(work, monkeypatch):
    """With telea, which fills each frame on its own, a chunk's eyes+inpaint+composite fills the chunk's frames
    and no earlier ones (the default inpainter's fills carry over, so it fills again from its last checkpoint;
    telea's do not) and writes no checkpoint into filled/."""
    filled: list[int] = []

    class Counted(PerFrame):
        def fill(self, n: int):
            filled.append(n)
            return super().fill(n)

    monkeypatch.setitem(INPAINTERS, "telea", lambda clip: Counted(fill_telea, clip))
    job, _ = pipeline.prepare(work.spec(inpaint="telea", keep=None), None, None, None)
    pipeline.run_group(job.plan, ("ingest",), ())
    pipeline.run_group(job.plan, ("eyes", "inpaint", "composite"), (), chunk=(13, 24))
    assert sorted(filled) == sorted(2 * list(range(13, 25)))  # each eye's frames 13 to 24, once
    assert len(list((work.shot / "out" / "frames" / "sbs").glob("*.png"))) == 12
    assert not (work.shot / "filled").exists()
    work.set_aside("telea-chunk")


def test_farm_recipe_gives_the_bytes_of_one_process(work, single, capsys):
    """The README's recipe for a farm manager: prepare, chunks of the per-frame stages (two at once, each its own
    process), the inpainting once, chunks of composite, then the plain command, which encodes."""
    args = work.args()
    rc = main(["convert", *args, "--chunk", "1:12", "--stages", "ingest,cloud,eyes"])
    assert rc == 2 and "--prepare" in capsys.readouterr().err
    assert not work.shot.exists()  # refused before writing anything

    assert main(["convert", *args, "--prepare"]) == 0
    record = (work.shot / "shot.json").stat()
    env = {**os.environ, "PYTHONPATH": BACKEND}
    for stages in ("ingest,cloud,eyes", "composite"):
        if stages == "composite":
            assert main(["convert", *args, "--stages", "inpaint"]) == 0
            record = (work.shot / "shot.json").stat()
        chunks = [subprocess.Popen([sys.executable, "-m", "stereoforge.cli", "convert", *args, "--chunk", chunk,
                                    "--stages", stages], env=env, stderr=subprocess.PIPE, text=True)
                  for chunk in ("1:12", "13:24")]
        for chunk in chunks:
            assert chunk.wait(timeout=300) == 0, chunk.stderr.read()
        after = (work.shot / "shot.json").stat()
        assert (after.st_ino, after.st_mtime_ns) == (record.st_ino, record.st_mtime_ns)  # chunks never write it
    assert not (work.shot / "out" / "video").exists()
    assert main(["convert", *args]) == 0
    capsys.readouterr()
    assert_same_files(work.set_aside("recipe"), single)


def fills(work: Work) -> dict[Path, tuple[int, int]]:
    """The shot's finished fills (filled/): path -> (inode, modification time), which a frame done again changes."""
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted((work.shot / "filled").rglob("[0-9]*.png"))}


def in_thread(job: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    """``job`` run in a thread, started: the thread, and the list that gets what it raises."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            job()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failure.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    return runner, failure


def kill_an_eye_task(work: Work, runner: threading.Thread) -> tuple[int | None, list[int], dict]:
    """Once each eye's task (eyes+inpaint) has filled 2 or more of its frames but not all (or has ended), stop
    the running ones (SIGSTOP) and kill one (SIGKILL): its pid, the other's (still stopped: the caller lets it
    go on, SIGCONT; none if that eye was done), and the fills finished then (:func:`fills`). None if ``runner``
    ended first."""
    while runner.is_alive():
        tasks = [pid for pid in stereoforge_tasks()
                 if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::stereoforge.eyes+inpaint")]
        for pid in tasks:
            os.kill(pid, signal.SIGSTOP)  # held still while we look at what they have written
        filling = [n for n in (len(list((work.shot / "filled" / eye).glob("[0-9]*.png"))) for eye in EYES)
                   if n < FRAMES]
        if tasks and len(tasks) == len(filling) and min(filling) >= 2:  # each task fills one of those eyes
            os.kill(tasks[0], signal.SIGKILL)
            return tasks[0], tasks[1:], fills(work)
        for pid in tasks:
            os.kill(pid, signal.SIGCONT)
        time.sleep(0.005)
    return None, [], {}


def test_killed_worker_is_retried_and_its_stage_resumes(cluster, work, single):
    """A worker is killed (SIGKILL) while it splats and inpaints an eye: Ray runs the task again in another
    worker, which skips the frames the first one finished; the shot is the bytes of one process. A job that
    this process (Ray's driver) runs next and cancels 10 s after the kill stops and resumes as any does
    (:func:`cancel_and_resume`): with ray.cancel there, Ray aborted this process ("Tried to complete task that
    was not pending", exit status 1) in 2 of 7 runs of this test, and in 3 of 3 runs of a script that waited
    30 s after the cancel."""
    runner, failure = in_thread(lambda: farm.convert(work.spec()))
    killed, others, kept = kill_an_eye_task(work, runner)
    killed_at = time.monotonic()
    for pid in others:
        os.kill(pid, signal.SIGCONT)
    runner.join(timeout=300)
    assert killed is not None, "the inpaint stage ended before a worker could be killed"
    assert failure == []
    assert not alive(killed)
    assert fills(work).items() >= kept.items()  # finished frames not redone
    assert_same_files(work.set_aside("killed"), single)
    time.sleep(max(0.0, 10 - (time.monotonic() - killed_at)))  # the job server's next job, say
    cancel_and_resume(work, single, "killed-then-cancelled")


def test_a_job_cancelled_after_a_killed_worker_was_retried_stops_and_resumes(cluster, work, single):
    """The job is cancelled after a worker was killed while it filled an eye and Ray ran its task again: the
    job raises Cancelled and this process (Ray's driver) goes on (``ray.cancel`` of the tasks could abort it
    there: Ray's "Tried to complete task that was not pending"), the finished frames stay, and the same job
    resumes them to the bytes of one process."""
    cancelled = threading.Event()
    runner, failure = in_thread(lambda: farm.convert(work.spec(), cancel=cancelled.is_set))
    killed, others, kept = kill_an_eye_task(work, runner)
    assert killed is not None, "the inpaint stage ended before a worker could be killed"
    for _ in range(6000):  # up to a minute, until the retry fills a frame (the other eye's task is held)
        if set(fills(work)) > set(kept):
            break
        time.sleep(0.01)
    retried = set(fills(work)) > set(kept)
    cancelled.set()
    for pid in others:
        os.kill(pid, signal.SIGCONT)
    runner.join(timeout=300)
    assert retried, "the killed task was not run again"
    assert [type(exc) for exc in failure] == [Cancelled]
    assert re.match(r"cancelled during (cloud and )?eyes\+inpaint;", str(failure[0]))
    assert len(fills(work)) < 2 * FRAMES
    assert fills(work).items() >= kept.items()
    farm.convert(work.spec())  # resumes
    assert fills(work).items() >= kept.items()
    assert_same_files(work.set_aside("killed-cancelled"), single)


def test_progress_json_on_ray_is_json_lines_only_when_a_worker_dies(work, single):
    """``convert --ray --progress json`` in its own process: a worker is killed while it fills an eye, Ray says so
    (on standard error) and retries the task; standard output holds the JSON lines only, and the shot is the bytes
    of one process."""
    command = subprocess.Popen([sys.executable, "-m", "stereoforge.cli", "convert", *work.args(), "--ray",
                                "--progress", "json"], env={**os.environ, "PYTHONPATH": BACKEND},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    while command.poll() is None and killed is None:
        for pid in stereoforge_tasks():
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::stereoforge.eyes+inpaint"):
                os.kill(pid, signal.SIGKILL)
                killed = pid
                break
        time.sleep(0.05)
    out, err = command.communicate(timeout=300)
    assert killed is not None, "the job ended before a worker could be killed"
    assert command.returncode == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert records[-1]["event"] == "finished"
    assert "A worker died" in err
    assert_same_files(work.set_aside("json"), single)


def cancel_and_resume(work: Work, single: dict[str, str], name: str) -> None:
    """A job cancelled while the eyes are splatted and inpainted, then run again: their tasks stop at their next
    frame (the run's cancel marker, a hidden file in the shot folder, gone when the job returns) and nothing
    runs on after the job returns; the finished frames stay and the same job resumes them to the bytes of one
    process (``single``; the shot set aside as ``name``), a marker that a killed driver left neither stopping
    it nor staying."""
    stages = []
    with pytest.raises(Cancelled, match=r"cancelled during (cloud and )?eyes\+inpaint;"):
        farm.convert(work.spec(), progress=lambda stage, done, total: stages.append(stage),
                     cancel=lambda: "eyes+inpaint" in stages)
    # A cancelled task's process stops at its next frame: on a busy machine that may take seconds (up to 30).
    for _ in range(300):
        if not stereoforge_tasks():
            break
        time.sleep(0.1)
    assert stereoforge_tasks() == []  # the tasks stopped with the job
    assert [p.name for p in work.shot.iterdir() if p.name.startswith(".")] == []
    filled = sorted((work.shot / "filled").rglob("[0-9]*.png"))
    assert len(filled) < 2 * FRAMES
    kept = {p: p.stat().st_ino for p in filled}
    (work.shot / f"{farm.CANCEL_MARKER}{'0' * 16}").touch()  # left by a driver killed while it cancelled
    farm.convert(work.spec())  # resumes
    assert {p: p.stat().st_ino for p in kept} == kept
    assert_same_files(work.set_aside(name), single)


def test_cancel_stops_the_tasks_and_keeps_finished_frames(cluster, work, single):
    """The tasks stop at their next frame, not with ray.cancel; the same job resumes (:func:`cancel_and_resume`)."""
    cancel_and_resume(work, single, "cancelled")


@pytest.mark.parametrize("options, says", [
    (["--ray", "not an address"], "--ray 'not an address' is not a Ray address"),
    (["--ray", "127.0.0.1:1"], "--ray 127.0.0.1:1: no Ray cluster answers there"),
    (["--chunk", "0:3"], "--chunk 0:3 is not valid"),
    (["--chunk", "5:2"], "--chunk 5:2 is not valid"),
    (["--chunk", "two"], "--chunk 'two' is not valid"),
    (["--chunk", "20:30"], "--chunk 20:30 does not fit the shot's 24 frames"),
    (["--chunk", "1:12", "--stages", "eyes,inpaint"], "--inpaint background fills each eye frame after frame"),
    (["--chunk", "1:12", "--stages", "encode"], "the encode stage writes whole videos"),
    (["--chunk", "1:12", "--ray"], "--ray and --chunk each say where and how the job runs"),
])
def test_bad_ray_address_or_chunk_is_one_line(work, capsys, options, says):
    rc = cli("convert", *work.args(), *options)
    err = capsys.readouterr().err
    assert rc == 2
    assert says in err and len(err.strip().splitlines()) == 1
    assert not work.shot.exists()


def test_bad_ray_address_exits_2_without_a_traceback(work):
    done = subprocess.run([sys.executable, "-m", "stereoforge.cli", "convert", *work.args(), "--ray", "127.0.0.1:1"],
                          env={**os.environ, "PYTHONPATH": BACKEND}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("stereoforge: error: --ray 127.0.0.1:1") and "Traceback" not in done.stderr
