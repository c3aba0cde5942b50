"""The Blender add-on, inside real Blender (``bpy`` 4.5 from PyPI, headless, Cycles on the CPU).

Each Blender session is its own process (``tests/blender/addon_session.py``; ``bpy`` state is global) with a
fresh user folder (``BLENDER_USER_RESOURCES``), into which the zip that ``stereoforge addon build`` writes is
installed with ``bpy.ops.extensions.package_install_files``, as a user's "Install from Disk" does.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

if importlib.util.find_spec("bpy") is None:
    pytest.skip("needs bpy (Blender as a Python module): pip install -e '.[test]'", allow_module_level=True)

import addon_modules  # noqa: E402
from stereoforge import __version__  # noqa: E402
from stereoforge.io.images import read_eye  # noqa: E402
from stereoforge.pipeline import convert  # noqa: E402
from stereoforge.spec import ConvertSpec  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SESSION = ROOT / "tests" / "blender" / "addon_session.py"
W, H, FRAMES = 96, 64, 3
#: A wide rig, so that the eyes have dropout to mask and fill.
INTEROCULAR = 0.2


def blender(scenario: str, zip_path: Path, args: dict, user_dir: Path, timeout: float = 900,
            session: Path = SESSION, **env) -> dict:
    """Run one scenario of ``session`` in a fresh Blender process with its own user folder; returns its RESULT
    (with the session's ``stdout``). ``env`` adds environment variables; the backend it starts inherits them.
    The Hugging Face cache is an empty folder in the user folder, offline: only the tests' tiny models exist."""
    user_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(user_dir), HF_HUB_OFFLINE="1", HF_HOME=str(user_dir / "hf"),
               **env)
    done = subprocess.run([sys.executable, str(session), scenario, str(zip_path), json.dumps(args)],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=str(user_dir))
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT: ")]
    assert done.returncode == 0 and lines, f"Blender session failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return {**json.loads(lines[-1][len("RESULT: "):]), "stdout": done.stdout}


def make_clip(folder: Path, W: int = W, H: int = H, frames: int = FRAMES) -> tuple[Path, Path]:
    """A tiny clip with metric depth: a slanted, smoothly textured back wall (5-7 m) and a textured disc at
    1.5 m that moves right. Returns (frame folder, depth .npy stack)."""
    plate = folder / "plate"
    plate.mkdir(parents=True)
    v, u = np.mgrid[0:H, 0:W].astype(np.float32)
    depths = []
    for n in range(frames):
        rgb = np.stack([0.5 + 0.4 * np.sin(u / 7.0 + v / 11.0), 0.5 + 0.4 * np.cos(v / 6.0),
                        0.45 + 0.35 * np.sin((u - v) / 9.0)], axis=-1)
        depth = 5.0 + 2.0 * v / H + 0.5 * u / W
        cx, cy, r = W * (0.35 + 0.1 * n), H * 0.5, H * 0.28
        disc = (u - cx) ** 2 + (v - cy) ** 2 < r * r
        rgb[disc] = np.stack([0.85 + 0.1 * np.sin(u / 4.0), 0.55 + 0.2 * np.cos(v / 5.0),
                              0.15 + 0.1 * np.sin((u + v) / 6.0)], axis=-1)[disc]
        depth[disc] = 1.5
        cv2.imwrite(str(plate / f"frame_{n + 1:03d}.png"), (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)[..., ::-1])
        depths.append(depth)
    np.save(folder / "depth.npy", np.stack(depths).astype(np.float32))
    return plate, folder / "depth.npy"


@pytest.fixture(scope="module")
def addon_zip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "stereoforge.cli", "addon", "build", "--output", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    path = out / f"stereoforge-{__version__}.zip"
    assert done.stdout.strip() == str(path)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, Path]:
    return make_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def headless_shot(addon_zip, clip, tmp_path_factory) -> tuple[dict, Path]:
    """The README's headless script on the tiny clip; run twice (the second run must resume, doing nothing)."""
    work = tmp_path_factory.mktemp("headless")
    plate, depth = clip
    shot = work / "sh010"
    settings = {"source": "VIDEO", "source_path": str(plate), "depth_path": str(depth), "depth_kind": "METRIC",
                "output_dir": str(shot), "interocular": INTEROCULAR, "samples": 16,
                "layout": ["SBS", "ANAGLYPH"]}
    result = blender("headless", addon_zip, {"settings": settings, "rerun": True}, work / "user")
    return result, shot


# -- the zip ------------------------------------------------------------------------------------------------

def test_zip_holds_the_addon_only_and_blender_validates_it(addon_zip):
    with zipfile.ZipFile(addon_zip) as archive:
        names = archive.namelist()
        manifest = archive.read("blender_manifest.toml").decode()
    assert "blender_manifest.toml" in names and "__init__.py" in names  # at the root, as Blender expects
    assert all("/" not in name for name in names), names
    assert not [n for n in names if n.endswith((".whl", ".pyc")) or "stereoforge/" in n or "backend" in n]
    assert f'version = "{__version__}"' in manifest and 'id = "stereoforge"' in manifest
    assert 'blender_version_min = "4.2.0"' in manifest and "[permissions]" in manifest
    # Blender's own extension validator, run as a script (no bpy needed in this process).
    bpy_dir = Path(importlib.util.find_spec("bpy").submodule_search_locations[0])
    validator = next(bpy_dir.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    done = subprocess.run([sys.executable, str(validator), "validate", str(addon_zip)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_build_refuses_a_manifest_of_another_version(tmp_path):
    from stereoforge.dev.addon_build import build
    from stereoforge.errors import InputError

    (tmp_path / "addon").mkdir()
    (tmp_path / "addon" / "__init__.py").write_text("")
    (tmp_path / "blender_manifest.toml").write_text('id = "stereoforge"\nversion = "9.9.9"\n')
    with pytest.raises(InputError, match="9.9.9"):
        build(tmp_path / "out", root=tmp_path)


def test_the_addon_imports_only_blender_and_the_standard_library():
    import ast

    allowed = {"bpy", "mathutils", "addon_utils", "numpy"} | set(sys.stdlib_module_names)
    for path in (ROOT / "addon").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            assert {name.split(".")[0] for name in names} <= allowed, (path.name, names)


# -- install, enable, disable -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lifecycle(addon_zip, tmp_path_factory) -> dict:
    """Install and enable, draw the panels, check the backend, disable, enable again: one session."""
    return blender("lifecycle", addon_zip, {}, tmp_path_factory.mktemp("lifecycle") / "user")


def test_install_enable_disable_enable_leaves_nothing_behind(lifecycle):
    found = lifecycle
    operators = {"run", "load", "import_clouds", "setup_camera", "render_eyes", "inpaint", "composite", "cancel",
                 "check_backend", "load_result"}
    for state in (found["first"], found["again"]):
        assert state["enabled"]
        assert set(state["operators"]) == operators
        assert state["panels"]["STEREOFORGE_PT_main"] == "StereoForge"
        assert set(state["panels"].values()) == {"StereoForge"}
        assert (state["panel_space"], state["panel_region"]) == ("VIEW_3D", "UI")
        assert state["scene_property"] and state["wm_property"]
        assert state["status_bar"] == 1
    assert found["first"]["types"] == found["again"]["types"]
    gone = found["disabled"]
    assert not gone["enabled"] and not gone["operators"] and not gone["panels"] and not gone["types"]
    assert not gone["scene_property"] and not gone["wm_property"] and gone["status_bar"] == 0
    assert found["check"] == "ok"  # Blender's Python has stereoforge here: the default backend


def test_panels_draw_every_setting(lifecycle):
    drawn = {panel: [tuple(item) for item in items] for panel, items in lifecycle["drawn"].items()}
    main_idle = drawn["STEREOFORGE_PT_main VIDEO RELATIVE idle"]
    assert ("operator", "stereoforge.run") in main_idle
    assert any(kind == "progress" and "render eyes 2/5" in text
               for kind, text in drawn["STEREOFORGE_PT_main VIDEO RELATIVE running"])
    shown = {name for items in drawn.values() for kind, name in items if kind == "prop"}
    assert {"source", "prompt", "source_path", "source_camera", "lens", "depth_path", "depth_model", "depth_kind",
            "near", "far", "baseline", "interocular", "convergence_distance", "convergence_mode", "pivot",
            "max_parallax", "eye_renderer", "samples", "inpaint", "layout", "codec", "crf", "fps",
            "output_dir"} <= shown
    operators = {name for items in drawn.values() for kind, name in items if kind == "operator"}
    assert {f"stereoforge.{op}" for op in ("run", "load", "import_clouds", "setup_camera", "render_eyes",
                                           "inpaint", "composite", "cancel")} <= operators
    assert drawn["status idle"] == []


# -- the headless script ------------------------------------------------------------------------------------

def test_headless_script_makes_a_stereo_shot_with_blender_eyes(headless_shot):
    result, shot = headless_shot
    assert result["result"] == ["FINISHED"], result["message"]
    for eye in ("left", "right"):
        for kind, ext in (("eyes", "exr"), ("masks", "png"), ("filled", "png")):
            files = sorted(os.listdir(shot / kind / eye))
            assert files == [f"{n:06d}.{ext}" for n in range(1, FRAMES + 1)], (kind, eye, files)
    record = json.loads((shot / "eyes" / "blender.json").read_text())
    assert record["render"]["samples"] == 16
    # The eyes are Blender's: its multilayer EXR channels, with alpha = coverage and some dropout.
    from stereoforge.io.images import read_exr_channels

    channels = read_exr_channels(shot / "eyes" / "left" / "000001.exr")
    assert "StereoForge Eyes.Combined.A" in channels and "StereoForge Eyes.Depth.Z" in channels
    _, alpha, _ = read_eye(str(shot / "eyes" / "left" / "000001.exr"))
    mask = cv2.imread(str(shot / "masks" / "left" / "000001.png"), cv2.IMREAD_GRAYSCALE)
    assert 0.005 < (mask == 255).mean() < 0.2
    assert np.array_equal(mask == 255, alpha < 0.5)
    filled = cv2.imread(str(shot / "filled" / "left" / "000001.png"))
    assert filled.shape == (H, W, 3) and (filled.sum(axis=-1) > 0).all()  # dropout was filled
    sbs = sorted(os.listdir(shot / "out" / "frames" / "sbs"))
    assert len(sbs) == FRAMES and cv2.imread(str(shot / "out" / "frames" / "sbs" / sbs[0])).shape == (H, 2 * W, 3)
    videos = sorted(os.listdir(shot / "out" / "video"))
    assert videos == ["sh010_anaglyph.mp4", "sh010_sbs.mp4"]
    assert result["video"].endswith("sh010_sbs.mp4") and os.path.getsize(result["video"]) > 0
    assert result["review_images"] == [["sh010_sbs.mp4", "MOVIE"]]  # Load Result, for an Image Editor


def test_scene_holds_the_streaming_cloud_and_the_stereo_camera(headless_shot):
    result, shot = headless_shot
    meta = json.loads((shot / "shot.json").read_text())
    assert result["clouds"] == ["sh010 cloud"]
    assert result["modifiers"] == ["MESH_SEQUENCE_CACHE"]
    assert result["material"] == "StereoForge Points"
    assert {"displayColor", "radius", "position"} <= set(result["attributes"])
    assert result["points_per_frame"] == [W * H] * FRAMES  # every pixel has depth, stride 1
    assert result["camera"] == "sh010 stereo camera"
    rig = meta["rig"]
    assert result["stereo"]["interocular_distance"] == pytest.approx(INTEROCULAR, rel=1e-6)
    assert rig["interocular_distance"] == pytest.approx(INTEROCULAR, rel=1e-9)
    assert result["stereo"]["convergence_distance"] == pytest.approx(rig["convergence_distance"], rel=1e-6)
    assert (result["stereo"]["convergence_mode"], result["stereo"]["pivot"]) == ("OFFAXIS", "CENTER")
    assert result["lens"] == pytest.approx(meta["camera"]["lens_mm"]) and result["sensor_width"] == 36.0
    assert result["camera_forward"] == pytest.approx([0, 1, 0], abs=1e-6)  # the source camera, looking along +Y
    assert result["camera_location"] == pytest.approx([0, 0, 0], abs=1e-6)
    # The eyes rendered in a scene of their own: the artist's render settings and camera are Blender's defaults.
    r = result["render"]
    assert not r["use_multiview"] and not r["film_transparent"] and r["frames"] == [1, 250]
    assert r["resolution"] == [1920, 1080, 100] and result["scene_camera"] == "Camera"


def test_running_again_resumes_without_rendering_anything(headless_shot):
    result, _ = headless_shot
    assert result["rerun_result"] == ["FINISHED"]
    assert result["rerun_touched"] == []


def test_switching_to_the_splatter_replaces_blenders_eyes(headless_shot, clip, addon_zip, tmp_path):
    import shutil

    _, shot = headless_shot
    plate, depth = clip
    copy = tmp_path / "sh010"
    shutil.copytree(shot, copy)
    settings = {"source": "VIDEO", "source_path": str(plate), "depth_path": str(depth), "depth_kind": "METRIC",
                "output_dir": str(copy), "interocular": INTEROCULAR, "eye_renderer": "SPLATTER"}
    found = blender("headless", addon_zip, {"settings": settings}, tmp_path / "user")
    assert found["result"] == ["FINISHED"]
    assert not (copy / "eyes" / "blender.json").exists()
    from stereoforge.io.images import read_exr_channels

    assert {"R", "G", "B", "A", "Z"} <= set(read_exr_channels(copy / "eyes" / "left" / "000001.exr"))
    assert len(os.listdir(copy / "filled" / "left")) == FRAMES and (copy / "out" / "video" / "sh010_sbs.mp4").exists()


def test_ui_job_polls_cancels_between_frames_and_resumes(addon_zip, clip, tmp_path):
    plate, depth = clip
    settings = {"source": "VIDEO", "source_path": str(plate), "depth_path": str(depth), "depth_kind": "METRIC",
                "output_dir": str(tmp_path / "shot"), "samples": 4}
    found = blender("ticks", addon_zip, {"settings": settings}, tmp_path / "user")
    assert found["cancelled"] and "kept" in found["cancelled"]
    assert not found["running_after"]
    assert found["waits"] > 0  # the backend was polled, never waited on
    # The session's first job starts the local backend, waited on between ticks like the rest.
    assert found["stages"][0] == "starting the backend" and found["stages"][-1] == "render eyes"
    assert found["kept"] == ["000001.exr", "000001.exr"]  # the finished frame (both eyes) stays
    assert found["resumed"] == ["FINISHED"]
    assert found["rerendered"] == [] and found["eyes_after"] == 2 * FRAMES


def test_blender_and_the_splatter_agree(headless_shot, tmp_path):
    """The same cloud and rig through Blender (Cycles) and through the backend's splatter: the eyes match on
    the pixels both cover, away from dropout and depth edges (where the two draw sub-pixel edges differently:
    Blender's points are spheres 1.5 px wide, the splatter's are bilinear splats)."""
    _, shot = headless_shot
    spec = json.loads((shot / "shot.json").read_text())["spec"]
    spec.update(output_dir=str(tmp_path / "splat"), stages=None, device="cpu", keep=["eyes"])
    convert(ConvertSpec.from_dict(spec))
    figures = []
    for n in range(1, FRAMES + 1):
        for eye in ("left", "right"):
            b_rgb, b_alpha, b_depth = read_eye(str(shot / "eyes" / eye / f"{n:06d}.exr"))
            s_rgb, s_alpha, s_depth = read_eye(str(tmp_path / "splat" / "eyes" / eye / f"{n:06d}.exr"))
            both = (b_alpha > 0.99) & (s_alpha > 0.99)
            dropout = (b_alpha < 0.5) | (s_alpha < 0.5)
            edges = dropout | _depth_edges(b_depth) | _depth_edges(s_depth)
            interior = both & ~(cv2.dilate(edges.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0)
            figures.append((n, eye, interior.mean(), *_mae_psnr(b_rgb - s_rgb, interior),
                            *_mae_psnr(b_rgb - s_rgb, both)))
            # Coverage agrees too: the same pixels are dropout, give or take an edge pixel per row.
            assert abs(float((b_alpha < 0.5).mean() - (s_alpha < 0.5).mean())) < 2.0 / W
    print("\nframe eye   compared  MAE     PSNR dB   (all pixels both cover: MAE, PSNR)")
    for n, eye, frac, mae, psnr, mae_all, psnr_all in figures:
        print(f"{n:5d} {eye:5s} {frac:8.1%}  {mae:.4f}  {psnr:6.2f}    ({mae_all:.4f}, {psnr_all:.2f})")
    for n, eye, frac, mae, psnr, _, _ in figures:
        assert frac > 0.5 and psnr > 30.0 and mae < 0.01, (n, eye, frac, mae, psnr)


def _mae_psnr(diff: np.ndarray, where: np.ndarray) -> tuple[float, float]:
    err = diff[where]
    return float(np.abs(err).mean()), 10 * math.log10(1.0 / max(float((err ** 2).mean()), 1e-12))


def _depth_edges(depth: np.ndarray) -> np.ndarray:
    """Pixels next to a depth jump of more than 10 % (or to empty pixels)."""
    d = np.where(np.isfinite(depth), depth, 1e6)
    jump = np.zeros(d.shape, bool)
    jump[:, 1:] |= np.abs(d[:, 1:] / d[:, :-1] - 1) > 0.1
    jump[1:, :] |= np.abs(d[1:, :] / d[:-1, :] - 1) > 0.1
    return jump


# -- bad input ----------------------------------------------------------------------------------------------

def test_bad_input_reports_and_changes_nothing(addon_zip, clip, tmp_path):
    plate, depth = clip
    shot = tmp_path / "shot"
    settings = {"source": "VIDEO", "source_path": str(plate), "depth_path": str(depth), "depth_kind": "METRIC",
                "output_dir": str(shot)}
    cases = {
        "missing_backend": {"_python": str(tmp_path / "no" / "python")},
        "wrong_path": {"source_path": str(tmp_path / "nowhere.mp4")},
        "no_depth": {"depth_path": ""},
        "depth_model_only": {"depth_path": "", "depth_model": str(tmp_path / "no-depth-model")},
        "prompt": {"source": "PROMPT", "prompt": "a red fox in the snow"},
        "scene_without_camera": {"source": "SCENE", "_no_camera": True},
        "no_output": {"output_dir": ""},
        "depth_of_another_size": {"depth_path": str(tmp_path / "bad.npy")},
        "render_before_load": {"_operator": "render_eyes"},
    }
    np.save(tmp_path / "bad.npy", np.ones((FRAMES, 10, 10), np.float32))
    found = blender("bad_inputs", addon_zip, {"settings": settings, "cases": cases}, tmp_path / "user")
    expected = {
        "missing_backend": "does not exist",
        "wrong_path": "nowhere.mp4",
        "no_depth": "no depth",
        "depth_model_only": "no-depth-model",
        "prompt": "video model",
        "scene_without_camera": "no camera",
        "no_output": "Output Folder",
        "depth_of_another_size": "10",
        "render_before_load": "Load",
    }
    for case, words in expected.items():
        got = found[case]
        assert got["outcome"] == ["ERROR"], (case, got)
        assert words.lower() in got["message"].lower(), (case, got["message"])
        assert "Traceback" not in got["message"]
        assert got["unchanged"], case
    assert found["depth_of_another_size"]["files"] == []  # the backend checks before it writes


# -- the Scene source ---------------------------------------------------------------------------------------

def test_scene_source_renders_the_camera_and_lands_the_clouds_on_the_scene(addon_zip, tmp_path):
    shot = tmp_path / "scene_shot"
    settings = {"source": "SCENE", "output_dir": str(shot), "samples": 4}
    found = blender("scene_source", addon_zip, {"settings": settings}, tmp_path / "user")
    assert found["result"] == ["FINISHED"]
    assert sorted(os.listdir(shot / "eyes" / "left")) == ["000001.exr", "000002.exr"]
    assert sorted(os.listdir(tmp_path / "scene_shot.scene" / "depth")) == ["000005.exr", "000006.exr"]
    assert found["scene_camera"] == "Camera" and found["camera"] == "scene_shot stereo camera"
    assert found["scenes"] == ["Scene"]  # the throw-away render scene is gone
    assert found["render"]["frames"] == [5, 6]  # the scene keeps its frame range
    # The points sit on the scene: the wall at y = 6 m and the cube's front face at y = 2.5 m, in both
    # frames, though the camera moved 0.2 m between them.
    for frame in ("5", "6"):
        ys = np.array(found["world_y"][frame])
        assert np.all((np.abs(ys - 6.0) < 0.02) | (np.abs(ys - 2.5) < 0.02)), ys
        assert (np.abs(ys - 2.5) < 0.02).any()
    assert found["x_range_6"][0] == pytest.approx(found["x_range_5"][0] + 0.2, abs=0.05)


# -- the client ---------------------------------------------------------------------------------------------

def test_cancel_stops_the_backend_and_keeps_finished_frames(tmp_path):
    client = addon_modules.load("client")
    # Enough frames that the job cannot finish before the cancel lands, even on a loaded machine.
    plate, depth = make_clip(tmp_path / "clip", 320, 240, 24)
    backend = client.LocalBackend(sys.executable)
    spec = {"source": str(plate), "depth": str(depth), "depth_kind": "metric", "output_dir": str(tmp_path / "s"),
            "stages": ["ingest", "cloud", "eyes"], "batch": 1}
    try:
        job = backend.start(spec)
        server = backend.server
        events = []
        with pytest.raises(client.JobCancelled):
            while True:
                events += job.poll()
                if any(e["stage"] == "cloud" and e["done"] >= 1 for e in events):
                    job.cancel()
                if job.result is not None:
                    break
                time.sleep(0.01)
        assert (tmp_path / "s" / "cloud" / "000001.usdc").exists()  # finished frames stay
        assert not (tmp_path / "s" / "eyes" / "left" / "000024.exr").exists()
        result = backend.start(spec).wait()  # run again: resumes and finishes, on the same warm backend
        assert backend.server is server and server.alive()
        assert result["shot_dir"] == str(tmp_path / "s")
        assert sorted(os.listdir(tmp_path / "s" / "eyes" / "left")) == [f"{n:06d}.exr" for n in range(1, 25)]
        server.process.kill()  # a crash: the next request starts a new backend
        server.process.wait()
        assert backend.check()["version"] == __version__ and backend.server is not server
    finally:
        client.stop_local_backends()


def test_backend_errors_come_back_as_messages(tmp_path):
    client = addon_modules.load("client")
    with pytest.raises(client.BackendError, match="does not exist"):
        client.LocalBackend(str(tmp_path / "python")).check()
    job = client.LocalBackend(sys.executable).start({"source": str(tmp_path / "missing.mp4"), "depth": "x.npy",
                                                     "output_dir": str(tmp_path / "o")})
    with pytest.raises(client.BackendError, match="missing.mp4"):
        job.wait()
