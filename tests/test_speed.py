"""The fast path of one process: eyes, inpaint and composite hand their frames over in memory, and eyes/,
masks/ and filled/ are written only when asked (``--keep``) or when a stage that reads them runs later.

The groups of stages run at once where one reads the files of another as they come
(:mod:`stereoforge.stages.overlap`): the encoder follows the composite frames, and its video is the one a run
stage by stage makes.

Every test compares with the reference of a run made stage by stage (one ``convert --stages STAGE`` after
another, each reading the files the one before wrote, as the add-on and a farm run them): the fast path must give
its composite frames to the byte, and the intermediates it keeps must be those files.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from stereoforge.composite import MULTIVIEW_EXR
from stereoforge.errors import Cancelled, InputError
from stereoforge.io.images import read_exr_channels, read_png8
from stereoforge.pipeline import convert
from stereoforge.plan import plan
from stereoforge.shot import INTERMEDIATES, STAGES
from stereoforge.spec import ConvertSpec
from stereoforge.stages import Job, groups, inpaint, written
from stereoforge.stages.job import POLL_S

H, W, FRAMES = 48, 80, 14
#: Checkpoints of the fill this often in these tests (the clip is short), so that a resume meets each case.
CHECKPOINT_EVERY = 4
FUSED = "eyes+inpaint+composite"


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A folder of frames and a metric depth stack: a textured plane at 6 m and a rectangle at 2 m moving
    right, so that the eyes open holes and the background inpainter's window and flow matter."""
    root = tmp_path_factory.mktemp("clip")
    rng = np.random.default_rng(3)
    coarse = rng.random((H // 4 + 2, (W + 2 * FRAMES) // 4 + 2, 3)).astype(np.float32)
    wide = cv2.resize(coarse, (W + 2 * FRAMES, H), interpolation=cv2.INTER_CUBIC)
    (root / "frames").mkdir()
    depth = np.full((FRAMES, H, W), 6.0, np.float32)
    for k in range(FRAMES):
        picture = np.clip(wide[:, k:k + W] * 230 + 15, 0, 255).astype(np.uint8)  # the camera pans
        depth[k, 12:36, 20 + 2 * k:36 + 2 * k] = 2.0
        assert cv2.imwrite(str(root / "frames" / f"f{k + 1:03d}.png"), picture)
    np.save(root / "depth.npy", depth)
    return root


def spec(clip: Path, out: Path, **options) -> ConvertSpec:
    return ConvertSpec(source=str(clip / "frames"), output_dir=str(out), depth=str(clip / "depth.npy"),
                       depth_kind="metric", device="cpu", cloud=False, batch=3, **options)


@pytest.fixture(scope="module")
def reference(clip, tmp_path_factory):
    """The shot made stage by stage, each stage in its own run reading the files of the one before."""
    shot = tmp_path_factory.mktemp("reference") / "shot"
    for stage in STAGES:
        if stage != "cloud":
            convert(spec(clip, shot, stages=(stage,)))
    return shot


def files(shot: Path, folder: str) -> list[str]:
    return sorted(p.relative_to(shot).as_posix() for p in (shot / folder).rglob("*") if p.is_file())


def same_frames(shot: Path, reference: Path) -> None:
    """The composite frames are the reference's, byte for byte."""
    names = files(reference, "out/frames")
    assert len(names) == FRAMES and files(shot, "out/frames") == names
    for name in names:
        assert (shot / name).read_bytes() == (reference / name).read_bytes(), name


def test_the_stages_run_one_by_one_write_every_intermediate(reference):
    for folder, ext in (("eyes", "exr"), ("masks", "png"), ("filled", "png")):
        for eye in ("left", "right"):
            names = [f"{folder}/{eye}/{n:06d}.{ext}" for n in range(1, FRAMES + 1)]
            assert files(reference, f"{folder}/{eye}") == names


def test_one_run_hands_the_frames_over_in_memory_and_gives_the_same_frames(clip, reference, tmp_path):
    shot = tmp_path / "shot"
    result = convert(spec(clip, shot))
    assert FUSED in result["timings"]
    same_frames(shot, reference)
    for folder in INTERMEDIATES:
        assert not (shot / folder).exists(), f"{folder}/ written though no --keep asked for it"


@pytest.mark.parametrize("keep", [("masks",), ("filled",), ("eyes", "filled"), ("eyes", "masks", "filled")])
def test_keep_writes_exactly_what_is_asked(clip, reference, tmp_path, keep):
    shot = tmp_path / "shot"
    convert(spec(clip, shot, keep=keep))
    same_frames(shot, reference)
    for folder in INTERMEDIATES:
        assert (shot / folder).exists() == (folder in keep), folder
    for folder in keep:
        assert files(shot, folder) == files(reference, folder)
        for name in files(reference, folder):
            if name.endswith(".png"):
                assert (shot / name).read_bytes() == (reference / name).read_bytes(), name
            else:  # kept eyes are written uncompressed (faster): the same values
                a, b = read_exr_channels(shot / name), read_exr_channels(reference / name)
                assert a.keys() == b.keys() and all(np.array_equal(a[c], b[c]) for c in a), name


def test_stages_run_in_parts_read_and_write_the_files_they_need(clip, reference, tmp_path):
    """eyes + inpaint in one run hand the eyes over in memory but write the masks and fills, which the later
    composite run reads; that run's frames are the reference's."""
    shot = tmp_path / "shot"
    convert(spec(clip, shot, stages=("ingest",)))
    convert(spec(clip, shot, stages=("eyes", "inpaint")))
    assert not (shot / "eyes").exists()
    assert files(shot, "masks") == files(reference, "masks") and files(shot, "filled") == files(reference, "filled")
    for name in files(reference, "filled"):
        assert (shot / name).read_bytes() == (reference / name).read_bytes(), name
    convert(spec(clip, shot, stages=("composite", "encode")))
    same_frames(shot, reference)


class StopAt:
    """Progress and cancel callbacks that stop a run once the fused stages have done ``frames`` frames."""

    def __init__(self, frames: int):
        self.frames, self.done = frames, 0

    def progress(self, stage: str, done: int, total: int) -> None:
        if stage == FUSED:
            self.done = done

    def cancel(self) -> bool:
        return self.done >= self.frames


@pytest.mark.parametrize("stops", [(2,), (6,), (9, 13), (13,)])
def test_a_stopped_run_resumes_to_the_uninterrupted_frames(clip, reference, tmp_path, monkeypatch, stops):
    """Stopped before the first checkpoint (the fill starts again from frame 1), after one (from there), after
    the checkpoint that removed the first, and twice: the frames are those of a run that never stopped; only
    checkpoints stay in filled/ between runs, and none once the shot is done."""
    monkeypatch.setattr(inpaint, "CHECKPOINT_EVERY", CHECKPOINT_EVERY)
    shot = tmp_path / "shot"
    for frames in stops:
        stop = StopAt(frames)
        with pytest.raises(Cancelled):
            convert(spec(clip, shot), progress=stop.progress, cancel=stop.cancel)
        assert len(files(shot, "out/frames")) == frames
        checkpoints = sorted({int(Path(name).stem) for name in files(shot, "filled")})
        assert len(checkpoints) <= 2 and all(n % CHECKPOINT_EVERY == 0 for n in checkpoints), checkpoints
    convert(spec(clip, shot))
    same_frames(shot, reference)
    assert not (shot / "filled").exists()


def test_a_resume_with_the_fills_kept_reads_the_last_one_back(clip, reference, tmp_path):
    shot = tmp_path / "shot"
    stop = StopAt(5)
    with pytest.raises(Cancelled):
        convert(spec(clip, shot, keep=("filled",)), progress=stop.progress, cancel=stop.cancel)
    assert len(files(shot, "filled")) == 2 * 5
    convert(spec(clip, shot, keep=("filled",)))
    same_frames(shot, reference)
    assert read_png8(shot / "filled" / "left" / f"{FRAMES:06d}.png") is not None


def test_which_stages_run_together(clip, tmp_path):
    job = Job(plan(spec(clip, tmp_path / "shot")))
    labels = lambda stages: ["+".join(group) for group in groups(job, stages)]
    assert labels(STAGES) == ["ingest", "cloud", FUSED, "encode"]
    assert labels(("inpaint", "composite")) == ["inpaint+composite"]
    assert labels(("eyes", "composite")) == ["eyes", "composite"]  # not one after the other
    assert labels(("eyes",)) == ["eyes"]
    model = Job(plan(spec(clip, tmp_path / "shot", inpaint_model="some/model")))
    assert groups(model, STAGES) == [(stage,) for stage in STAGES]


def test_a_farm_splats_and_fills_each_eye_in_memory_and_hands_the_fills_on(clip, tmp_path):
    """Split by eye (a farm's tasks), eyes and inpaint run as one and composite on its own: only the fills go
    through files (and the masks, for exr-multiview, which composite reads)."""
    job = Job(plan(spec(clip, tmp_path / "shot")))
    by_eye = groups(job, STAGES, by_eye=True)
    assert by_eye == [("ingest",), ("cloud",), ("eyes", "inpaint"), ("composite",), ("encode",)]
    assert written(job, STAGES, by_eye) == ("filled",)
    assert written(job, STAGES) == ()
    multiview = Job(plan(spec(clip, tmp_path / "shot", layouts=("sbs", MULTIVIEW_EXR))))
    assert written(multiview, STAGES, groups(multiview, STAGES, by_eye=True)) == ("masks", "filled")


# -- the groups of stages at once --------------------------------------------------------------------------------

VIDEO = "out/video/shot_sbs.mp4"


def same_files(shot: Path, reference: Path) -> None:
    """Every file of the shot is the reference's, byte for byte, and it has all of the reference's but the
    intermediates (shot.json aside: it names its own folder)."""
    names = [name for name in files(reference, ".") if name != "shot.json" and name.split("/")[0] not in INTERMEDIATES]
    assert [name for name in files(shot, ".") if name != "shot.json"] == names
    for name in names:
        assert (shot / name).read_bytes() == (reference / name).read_bytes(), name


class EncodeFollows:
    """Callbacks that hold the eyes, fills and composite after their third frame until the encoder has put a
    frame into the video (at most a minute): a run that encodes only once every frame is composed gets there
    with all of them composed."""

    def __init__(self):
        self.fused, self.fused_thread, self.encoded_at = 0, None, None
        self.encoded = threading.Event()
        self.events: list[tuple[str, int, int]] = []

    def progress(self, stage: str, done: int, total: int) -> None:
        self.events.append((stage, done, total))
        if stage == FUSED:
            self.fused, self.fused_thread = done, threading.get_ident()
        elif stage.startswith("encode") and self.encoded_at is None:
            self.encoded_at = self.fused
            self.encoded.set()

    def cancel(self) -> bool:
        if threading.get_ident() == self.fused_thread and self.fused == 3:
            self.encoded.wait(60)
        return False


def test_the_encoder_follows_the_composite_frames_and_makes_the_stage_by_stage_video(clip, reference, tmp_path):
    shot = tmp_path / "shot"
    follows = EncodeFollows()
    convert(spec(clip, shot), progress=follows.progress, cancel=follows.cancel)
    assert follows.encoded_at <= 3, f"the video began after {follows.encoded_at} of {FRAMES} frames were composed"
    # The stages' progress lines interleave; each stage's own count goes up to its total.
    for stage in ("ingest", FUSED, "encode sbs"):
        counts = [(done, total) for name, done, total in follows.events if name == stage]
        assert counts == sorted(counts) and counts[-1] == (FRAMES, FRAMES), (stage, counts)
    same_files(shot, reference)
    assert (shot / VIDEO).read_bytes() == (reference / VIDEO).read_bytes()


class StopWhen:
    """A ``cancel`` callback that turns true once ``stage`` (a progress label, or its start) has done ``frames``."""

    def __init__(self, stage: str, frames: int):
        self.stage, self.frames, self.done = stage, frames, 0

    def progress(self, stage: str, done: int, total: int) -> None:
        if stage.startswith(self.stage):
            self.done = done

    def cancel(self) -> bool:
        return self.done >= self.frames


@pytest.mark.parametrize("stage, frames", [("ingest", 4), (FUSED, 5), ("encode", 1), ("encode", 9)])
def test_a_run_stopped_while_its_stages_overlap_resumes_to_the_same_files(clip, reference, tmp_path, stage,
                                                                          frames):
    """Stopped while ingest leads the eyes, while the encoder follows the composite, and while it encodes: every
    group stops, nothing is left half-written (no video, no temporary), and the resumed shot is the reference's,
    byte for byte."""
    shot = tmp_path / "shot"
    stop = StopWhen(stage, frames)
    with pytest.raises(Cancelled):
        convert(spec(clip, shot), progress=stop.progress, cancel=stop.cancel)
    assert not (shot / VIDEO).exists()
    assert [p.name for p in shot.rglob("*") if p.name.startswith(".") or ".tmp" in p.name] == []
    convert(spec(clip, shot))
    same_files(shot, reference)


def test_ctrl_c_stops_every_stage_and_the_run_resumes_to_the_same_files(clip, reference, tmp_path):
    """Ctrl-C reaches the calling thread, which waits for the stages' threads: they stop between frames and
    are gone when KeyboardInterrupt comes out, leaving no video and nothing half-written."""
    shot = tmp_path / "shot"
    sent = threading.Event()

    def progress(stage: str, done: int, total: int) -> None:
        if stage == FUSED and done == 2 and not sent.is_set():
            sent.set()
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        convert(spec(clip, shot), progress=progress)
    ours = tuple(f"stereoforge-{name}" for name in ("ingest", FUSED, "encode", "inpaint", "write"))
    assert [t.name for t in threading.enumerate() if t.name.startswith(ours)] == []
    assert not (shot / VIDEO).exists() and 2 <= len(files(shot, "out/frames")) < FRAMES
    assert [p.name for p in shot.rglob("*") if p.name.startswith(".") or ".tmp" in p.name] == []
    convert(spec(clip, shot))
    same_files(shot, reference)


def test_a_follower_waits_for_its_files_and_stops_when_they_cannot_come(clip, tmp_path):
    """Job.wait_for: it returns once the file is there; when the stage that writes it has ended without it,
    it names the file; a cancel stops it while it waits."""
    shot = tmp_path / "shot"
    ended = threading.Event()
    job = Job(plan(spec(clip, shot)), upstream_ended=ended)
    frame = job.composite_frame("sbs", 1)
    Path(frame).parent.mkdir(parents=True)
    threading.Timer(5 * POLL_S, lambda: Path(frame).write_bytes(b"done")).start()
    job.wait_for("encode", frame)
    assert Path(frame).exists()
    ended.set()
    with pytest.raises(InputError, match="sbs_000002.png' is missing"):
        job.wait_for("encode", job.composite_frame("sbs", 2))
    ended.clear()
    job.cancel = lambda: True
    with pytest.raises(Cancelled, match="during encode"):
        job.wait_for("encode", job.composite_frame("sbs", 2))
