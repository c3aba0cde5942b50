"""The add-on as a guest in an artist's scene, inside real Blender (``bpy`` 4.5, headless, Cycles on the CPU).

A scene set up away from Blender's defaults (frame range 3-40, 25 fps, a 30 mm camera, Filmic with a look,
exposure and gamma, the Workbench or EEVEE engine, opaque film, two view layers of which one renders, 128x96 at
75 %, a JPEG output path, a selection) goes through Runs of every source, a cancelled Run, a failing backend and
the checks before work; each must leave every one of those settings as it was (``tests/blender/guest_session.py``).
Then the animated rig: a keyframed interocular is followed frame by frame, by the splatter and by Blender's
stereo camera alike.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

import tiny_models
from stereoforge.io.images import read_eye
from stereoforge.pipeline import convert
from stereoforge.spec import ConvertSpec
from test_addon import _depth_edges, _mae_psnr, addon_zip, blender, make_clip  # noqa: F401 (a fixture)

SESSION = Path(__file__).resolve().parent / "blender" / "guest_session.py"
VIDEO = {"source": "VIDEO", "depth_kind": "METRIC", "samples": 4}


@pytest.fixture(scope="module")
def runs(addon_zip, tmp_path_factory) -> tuple[dict, Path]:  # noqa: F811
    work = tmp_path_factory.mktemp("guest")
    plate, depth = make_clip(work / "clip")
    one = work / "one"
    (one / "plate").mkdir(parents=True)
    (one / "plate" / "frame_001.png").write_bytes((plate / "frame_001.png").read_bytes())
    np.save(one / "depth.npy", np.load(depth)[:1])
    np.save(work / "still.npy", np.load(depth)[0])
    np.save(work / "bad.npy", np.ones((3, 10, 10), np.float32))
    (work / "a file").write_text("in the way")
    video = {**VIDEO, "source_path": str(plate), "depth_path": str(depth)}
    shot = lambda name: {"output_dir": str(work / name)}
    broken_cloud(plate, depth, work / "broken")
    plan = {
        "video": {"settings": {**video, "frame_first": 2, "device": "CPU", "depth_edge_radius": 2,
                               "depth_smoothing": 0.5, **shot("video")}},
        "image": {"settings": {**VIDEO, "source": "IMAGE", "source_path": str(plate / "frame_002.png"),
                               "depth_path": str(work / "still.npy"), "max_far_parallax": 0.5,
                               "lens": 50.0, "sensor_width": 24.0,
                               "floating_window": True, **shot("image")}},
        "one_frame_folder": {"settings": {**video, "source_path": str(one / "plate"),
                                          "depth_path": str(one / "depth.npy"), "lens_from_camera": True,
                                          **shot("one_shot")}},
        "scene": {"engine": "BLENDER_EEVEE_NEXT", "camera_keys": [[4, 0.05], [5, 0.15]],
                  "settings": {"source": "SCENE", "samples": 4, "source_samples": 4, "frame_first": 2,
                               "frame_last": 3, **shot("scene")}},
        # A tiny text-to-video model and a tiny depth model (random weights): 2 frames of 64x96, 2 steps.
        "prompt": {"settings": {"source": "PROMPT", "prompt": "a red fox in the snow", "samples": 4,
                                "video_model": tiny_models.text_to_video_sd(work / "models" / "t2v"),
                                "depth_model": tiny_models.depth_anything(work / "models" / "depth"),
                                "num_frames": 2, "height": 64, "width": 96, "steps": 2, "seed": 3,
                                **shot("prompt")}},
        "cancelled": {"cancel": True, "settings": {**video, "frame_first": 1, "frame_last": 0, **shot("cancelled")}},
        "backend_fails": {"settings": {**video, "depth_path": str(work / "bad.npy"), **shot("fails")}},
        "import_fails": {"operator": "import_clouds", "settings": {**video, **shot("broken")}},
        "relative_in_unsaved_file": {"settings": {**video, "output_dir": "//stereo_rel"}},
        "unwritable_output": {"settings": {**video, "output_dir": str(work / "a file" / "shot")}},
        "range_outside_video": {"settings": {**video, "frame_first": 3, "frame_last": 9, **shot("range")}},
        "range_outside_scene": {"settings": {"source": "SCENE", "frame_first": 1, "frame_last": 60,
                                             **shot("scene_range")}},
    }
    found = blender("untouched", addon_zip, {"runs": plan}, work / "user", session=SESSION)
    return {**found["runs"], "_drawn": found["drawn"], "_notes": found["notes"], "_tooltips": found["tooltips"]}, work


def broken_cloud(plate: Path, depth: Path, shot: Path) -> None:
    """A loaded shot whose cloud.usdc holds a camera and no points: Blender's import of it fails half-way."""
    from pxr import Usd, UsdGeom

    convert(ConvertSpec(source=str(plate), depth=str(depth), depth_kind="metric", output_dir=str(shot),
                        stages=("ingest", "cloud"), cloud_stride=1))
    (shot / "cloud.usdc").unlink()
    stage = Usd.Stage.CreateNew(str(shot / "cloud.usdc"))
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    stage.SetDefaultPrim(UsdGeom.Xform.Define(stage, "/Shot").GetPrim())
    UsdGeom.Camera.Define(stage, "/Shot/Camera")
    stage.GetRootLayer().Save()


SETTINGS = ("frame_first", "frame_last", "depth_smoothing", "depth_edge_radius", "lens_from_camera", "sensor_width",
            "device", "source_engine", "source_samples", "max_far_parallax", "screen_width", "floating_window")


def test_the_panel_shows_a_stereographers_settings_with_tooltips(runs):
    drawn, tooltips = set(runs[0]["_drawn"]), runs[0]["_tooltips"]
    assert set(SETTINGS) <= drawn, drawn
    assert all(len(tooltips[name]) > 30 for name in SETTINGS), tooltips
    assert "AFFINE" in tooltips["depth_kind items"]


def test_the_scene_source_says_which_engine_renders_it(runs):
    notes = runs[0]["_notes"]
    assert notes["CYCLES"] == ["INFO", notes["CYCLES"][1]] and "Cycles at 16 samples" in notes["CYCLES"][1]
    # This machine has no GPU for Blender: EEVEE would render in software, and the user is told so.
    assert notes["EEVEE"][0] == "WARNING" and "no GPU" in notes["EEVEE"][1]


def test_the_artists_settings_are_unchanged_after_every_run(runs):
    found = {name: run for name, run in runs[0].items() if not name.startswith("_")}
    before = found["video"]["before"]
    assert before["frames"] == [3, 40, 7, 25, 1.0] and before["camera"] == "Camera"
    assert before["colour"] == ["sRGB", "Filmic", "High Contrast", 0.5, 1.2]
    assert before["engine"] == "BLENDER_WORKBENCH" and before["film_transparent"] is False
    assert before["view_layers"] == [["Beauty", True], ["Background", False]]
    assert before["resolution"] == [128, 96, 75, False] and before["selected"] == ["Artist Camera"]
    for name, run in found.items():
        assert run["changed"] == [], (name, run["changed"], run["message"])
        assert run["after"]["scenes"] == ["Scene"], name  # no render scene left behind
    assert found["scene"]["before"]["engine"] == "BLENDER_EEVEE_NEXT"


def test_every_source_runs_and_adds_only_its_shot(runs):
    found, work = runs
    for name, folder, frames in (("video", "video", 2), ("image", "image", 1), ("one_frame_folder", "one_shot", 1),
                                 ("scene", "scene", 2), ("prompt", "prompt", 2)):
        run = found[name]
        assert run["outcome"] == ["FINISHED"], (name, run["message"])
        assert sorted(os.listdir(work / folder / "eyes" / "left")) == [f"{n:06d}.exr" for n in range(1, frames + 1)]
        assert f"StereoForge {folder}" in run["shots"], (name, run["shots"])
        assert sorted(run["shots"][f"StereoForge {folder}"]) == sorted(
            [folder, f"{folder} cloud", f"{folder} stereo camera"])
        assert "Parallax" in run["parallax"]
    # The stereographer's settings reach the backend: frames 2 to the end, the device, the depth settings, the
    # lens on its sensor (50 mm on 24 mm is 75 mm on 36) or the scene camera's (30 mm on 36).
    spec = json.loads((work / "video" / "shot.json").read_text())["spec"]
    assert (spec["frames"], spec["device"], spec["depth_edge_radius"], spec["depth_smoothing"]) == (
        [2, None], "cpu", 2, 0.5)
    frames = json.loads((work / "video" / "shot.json").read_text())["parallax_frames"]
    # The panel shows the range, and the current frame's (the scene's first frame shows shot frame 1).
    assert found["video"]["parallax_at_start"] == [frames["near_pct"][0], frames["far_pct"][0]]
    lens = {folder: json.loads((work / folder / "shot.json").read_text())["camera"]["lens_mm"]
            for folder in ("image", "one_shot")}
    assert lens == pytest.approx({"image": 75.0, "one_shot": 30.0})
    assert sorted(os.listdir(work / "scene.scene" / "depth")) == ["000004.exr", "000005.exr"]
    assert "Cycles at 4 samples" in found["scene"]["message"]  # the Scene source says how it renders
    # The Image run asked for at most 0.5 % behind the screen: the backend narrowed the rig and the user is told.
    image = json.loads((work / "image" / "shot.json").read_text())
    assert "narrowed" in found["image"]["message"] and image["comfort"]["narrowed_frames"] == [1]
    assert max(image["parallax_frames"]["far_pct"]) == pytest.approx(0.5, abs=1e-3)
    assert image["spec"]["floating_window"] is True and image["spec"]["max_far_parallax"] == 0.5
    # The artist keyed the camera's stereo interocular at scene frames 4 and 5: the shot follows it.
    rig = json.loads((work / "scene" / "shot.json").read_text())["rig_frames"]["interocular_distance"]
    assert rig == pytest.approx([0.05, 0.15], abs=1e-6)


def test_a_failed_run_leaves_no_half_imported_shot(runs):
    found, work = runs
    cancelled = found["cancelled"]
    assert cancelled["outcome"] == ["CANCELLED"] and "cancelled" in cancelled["message"]
    assert len(os.listdir(work / "cancelled" / "eyes" / "left")) == 1  # the finished frame stays, for a resume
    fails = found["backend_fails"]
    assert fails["outcome"] == ["ERROR"] and "10" in fails["message"]
    assert "StereoForge fails" not in fails["shots"]
    # Blender's import made an empty and a camera but no point cloud: both are gone again, with the collection.
    broken = found["import_fails"]
    assert broken["outcome"] == ["ERROR"] and "did not give a point cloud" in broken["message"], broken["message"]
    assert "StereoForge broken" not in broken["shots"] and broken["shots"] == fails["shots"]


def test_checks_before_work_refuse_in_one_line_and_touch_nothing(runs):
    found, work = runs
    expected = {"relative_in_unsaved_file": "not saved", "unwritable_output": "cannot be made",
                "range_outside_video": "does not fit", "range_outside_scene": "does not fit"}
    for name, words in expected.items():
        run = found[name]
        assert run["outcome"] == ["ERROR"], (name, run)
        message = run["message"]
        assert words in message.lower() and "Traceback" not in message and len(message.splitlines()) == 1, message
        assert run["shots"] == found["backend_fails"]["shots"]
    assert not (work / "range").exists() and not (work / "scene_range").exists()


# -- the animated rig ---------------------------------------------------------------------------------------

FRAMES = 8


@pytest.fixture(scope="module")
def animated(addon_zip, tmp_path_factory) -> tuple[dict, Path]:  # noqa: F811
    work = tmp_path_factory.mktemp("animated")
    plate, depth = make_clip(work / "clip", frames=FRAMES)
    settings = {**VIDEO, "source_path": str(plate), "depth_path": str(depth), "output_dir": str(work / "shot"),
                "samples": 16, "convergence_distance": 3.0}
    # Scene frames 3 and 10: shot frames 1 and 8 (the artist's scene starts at 3).
    found = blender("animated_rig", addon_zip, {"settings": settings, "keys": [[3, 0.03], [10, 0.2]],
                                                "budget_dir": str(work / "budget")}, work / "user", session=SESSION)
    return found, work / "shot"


def test_a_keyframed_interocular_is_followed_frame_by_frame(animated):
    found, shot = animated
    assert found["outcome"] == ["FINISHED"], found["message"]
    meta = json.loads((shot / "shot.json").read_text())
    per_frame = meta["rig_frames"]["interocular_distance"]
    assert per_frame[0] == pytest.approx(0.03, abs=1e-6) and per_frame[-1] == pytest.approx(0.2, abs=1e-6)
    assert per_frame == pytest.approx(found["curve"], abs=1e-6)  # Blender's own curve, frame by frame
    assert found["camera"] == pytest.approx(per_frame, abs=1e-6)  # the stereo camera is keyed the same
    assert found["scenes"] == ["Scene"]
    # With a depth budget on, the budget sets the interocular, keyed or not: the nearest point sits on it.
    assert found["budget"] == ["FINISHED"]
    budget = json.loads((shot.parent / "budget" / "shot.json").read_text())
    assert budget["parallax_frames"]["near_pct"] == pytest.approx([-2.0] * FRAMES, abs=1e-3)


def test_blender_and_the_splatter_follow_the_same_animated_rig(animated, tmp_path):
    """Blender's eyes (its stereo camera keyed frame by frame) and the splatter's (the backend's rig per frame)
    agree on every frame; against a splatter held at the first frame's rig, the last frames disagree."""
    _, shot = animated
    spec = json.loads((shot / "shot.json").read_text())["spec"]
    spec.update(output_dir=str(tmp_path / "splat"), stages=None, device="cpu", inpaint="none", keep=["eyes"])
    convert(ConvertSpec.from_dict(spec))
    still = dict(spec, output_dir=str(tmp_path / "still"), interocular_curve=None, interocular=0.03)
    convert(ConvertSpec.from_dict(still))
    scores = []
    for n in range(1, FRAMES + 1):
        b_rgb, b_alpha, b_depth = read_eye(str(shot / "eyes" / "right" / f"{n:06d}.exr"))
        row = []
        for other in ("splat", "still"):
            s_rgb, s_alpha, s_depth = read_eye(str(tmp_path / other / "eyes" / "right" / f"{n:06d}.exr"))
            both = (b_alpha > 0.99) & (s_alpha > 0.99)
            edges = (b_alpha < 0.5) | (s_alpha < 0.5) | _depth_edges(b_depth) | _depth_edges(s_depth)
            interior = both & ~(cv2.dilate(edges.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0)
            row.append(_mae_psnr(b_rgb - s_rgb, interior)[1])
        scores.append(row)
    print("\nframe  PSNR dB: splatter with the rig per frame / held at frame 1")
    for n, (animated_psnr, still_psnr) in enumerate(scores, 1):
        print(f"{n:5d}  {animated_psnr:6.2f} / {still_psnr:6.2f}")
    assert all(a > 30.0 for a, _ in scores), scores
    assert scores[-1][0] > scores[-1][1] + 6, scores
