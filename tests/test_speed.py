"""The fast path of one process: eyes, inpaint and composite hand their frames over in memory, and eyes/,
masks/ and filled/ are written only when asked (``--keep``) or when a stage that reads them runs later.

Every test compares with the reference of a run made stage by stage (one ``convert --stages STAGE`` after
another, each reading the files the one before wrote, as the add-on and a farm run them): the fast path must give
its composite frames to the byte, and the intermediates it keeps must be those files.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from stereoforge.composite import MULTIVIEW_EXR
from stereoforge.errors import Cancelled
from stereoforge.io.images import read_exr_channels, read_png8
from stereoforge.pipeline import convert
from stereoforge.plan import plan
from stereoforge.shot import INTERMEDIATES, STAGES
from stereoforge.spec import ConvertSpec
from stereoforge.stages import Job, groups, inpaint, runs, written

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
    labels = lambda stages: [label for label, _ in runs(job, stages)]
    assert labels(STAGES) == ["ingest", "cloud", FUSED, "encode"]
    assert labels(("inpaint", "composite")) == ["inpaint+composite"]
    assert labels(("eyes", "composite")) == ["eyes", "composite"]  # not one after the other
    assert labels(("eyes",)) == ["eyes"]
    model = Job(plan(spec(clip, tmp_path / "shot", inpaint_model="some/model")))
    assert [label for label, _ in runs(model, STAGES)] == list(STAGES)


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
