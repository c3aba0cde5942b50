"""The add-on driving models, inside real Blender: a prompt becomes a stereo shot through a tiny text-to-video
model and a tiny depth model (random weights from the real config classes, loaded through ``from_pretrained``),
on the warm local backend and on a live ``stereoforge serve``; a still and its depth become a one-frame stereo
image; a cancel lands during denoising.

Each scenario is its own Blender process (``tests/blender/models_session.py``) with a fresh user folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

if importlib.util.find_spec("bpy") is None:
    pytest.skip("needs bpy (Blender as a Python module): pip install -e '.[test]'", allow_module_level=True)

import test_addon  # noqa: E402
import tiny_models  # noqa: E402
from test_addon import addon_zip  # noqa: E402, F401  (the fixture: the add-on zip, built once)

ROOT = Path(__file__).resolve().parents[1]
SESSION = ROOT / "tests" / "blender" / "models_session.py"
#: The Done-when shot: 8 frames of 64x96, 2 denoising steps.
FRAMES, H, W, STEPS = 8, 64, 96, 2


def blender(scenario: str, zip_path: Path, args: dict, user_dir: Path, timeout: float = 900, **env) -> dict:
    """A scenario of ``tests/blender/models_session.py`` in a fresh Blender process (see test_addon.blender)."""
    return test_addon.blender(scenario, zip_path, args, user_dir, timeout, session=SESSION, **env)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    """A tiny text-to-video pipeline (zeroscope's family) and a tiny Depth Anything, in a models folder."""
    folder = tmp_path_factory.mktemp("models")
    return {"video": tiny_models.text_to_video_sd(folder / "tiny-t2v"),
            "depth": tiny_models.depth_anything(folder / "tiny-depth"), "folder": str(folder)}


def prompt_settings(models: dict, shot: Path, **more) -> dict:
    return {"source": "PROMPT", "prompt": "a teddy bear dancing in the snow", "video_model": models["video"],
            "num_frames": FRAMES, "height": H, "width": W, "steps": STEPS, "seed": 7,
            "depth_model": models["depth"], "output_dir": str(shot), "samples": 4, "interocular": 0.2, **more}


def check_prompt_shot(found: dict, shot: Path, masks: bool = True) -> None:
    """The shot a prompt makes: source, depth, eyes, masks, filled eyes, an SBS video, the cloud in the scene.

    ``masks=False``: an inpainting model reads Blender's eyes' alpha and writes no masks/ (its stage is
    models/inpaint.py's, another issue's work).
    """
    assert found["result"] == ["FINISHED"], found.get("error") or found.get("message")
    for kind, ext in (("source", "png"), ("depth", "exr")):
        assert sorted(os.listdir(shot / kind)) == [f"{n:06d}.{ext}" for n in range(1, FRAMES + 1)], kind
    kinds = [("eyes", "exr"), ("filled", "png")] + ([("masks", "png")] if masks else [])
    for eye in ("left", "right"):
        for kind, ext in kinds:
            assert sorted(os.listdir(shot / kind / eye)) == [f"{n:06d}.{ext}" for n in range(1, FRAMES + 1)]
    assert (shot / "eyes" / "blender.json").exists()  # Blender rendered the eyes
    assert cv2.imread(str(shot / "filled" / "left" / "000001.png")).shape == (H, W, 3)
    video = shot / "out" / "video" / f"{shot.name}_sbs.mp4"
    assert found["video"] == str(video) and video.stat().st_size > 0
    meta = json.loads((shot / "shot.json").read_text())
    assert meta["spec"]["depth_model"] is not None and meta["spec"]["depth"] is None  # the model made the depth
    take = Path(str(shot) + ".takes") / "take_001"
    assert meta["spec"]["source"] == str(take / "generated")
    generated = json.loads((take / "shot.json").read_text())["generate"]
    assert generated["complete"] and generated["seed"] == 7 and generated["frames"] == FRAMES
    assert generated["size"] == [W, H] and generated["call"]["num_inference_steps"] == STEPS
    assert found["takes"] == ["take_001"]
    assert found["clouds"] == [f"{shot.name} cloud"] and found["modifiers"] == ["MESH_SEQUENCE_CACHE"]
    assert len(found["points_per_frame"]) == FRAMES and min(found["points_per_frame"]) > 0
    assert found["camera"] == f"{shot.name} stereo camera"
    assert not found["render"]["use_multiview"]  # the eyes render in the add-on's own scene: the artist's stays mono


def test_prompt_becomes_a_stereo_shot_on_the_warm_local_backend(addon_zip, models, tmp_path):  # noqa: F811
    shot = tmp_path / "sh020"
    found = blender("run_twice", addon_zip, {"settings": prompt_settings(models, shot), "list_models": True},
                    tmp_path / "user", STEREOFORGE_MODELS=models["folder"])
    check_prompt_shot(found, shot)
    # The warm backend: one server for every stage of both runs, and the resume did no work.
    assert found["server"]["count"] == 1 and found["server_after"] == found["server"]
    assert found["resume_result"]["shot_dir"] == str(shot)
    # Progress lines in background mode, down to the denoising steps.
    assert f"generate {STEPS}/{STEPS}" in found["stdout"] and f"render eyes {FRAMES}/{FRAMES}" in found["stdout"]
    # The models picker: the backend's list, by kind (the models folder is listed through STEREOFORGE_MODELS).
    assert found["listed"]["video"] == [models["video"]] and found["listed"]["depth"] == [models["depth"]]
    assert found["listed"]["image_video"] == [] and found["listed"]["inpaint"] == []


def test_prompt_becomes_a_stereo_shot_on_a_remote_server(addon_zip, models, tmp_path):  # noqa: F811
    root = tmp_path / "root"
    root.mkdir()
    token = "s3cret-token"
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    port = _free_port()
    # The models lie outside the root: the server reads model folders there only as --models-dir folders.
    server = subprocess.Popen([sys.executable, "-m", "stereoforge.cli", "serve", "--root", str(root), "--port",
                               str(port), "--token", token, "--models-dir", models["folder"],
                               "--models-dir", str(tmp_path)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, token, server)
        shot = root / "sh030"
        inpainter = tiny_models.sd_inpaint(tmp_path / "tiny-inpaint")
        settings = prompt_settings(models, shot, inpaint="MODEL", inpaint_model=inpainter, inpaint_steps=2,
                                   inpaint_chunk=4, inpaint_tile=128, inpaint_prompt="snow")
        found = blender("run_twice", addon_zip, {
            "settings": settings, "prefs": {"backend": "REMOTE", "url": url, "token": token},
        }, tmp_path / "user")
    finally:
        server.terminate()
        server.wait(timeout=30)
    check_prompt_shot(found, shot, masks=False)
    assert found["server"] == {"count": 0}  # no local backend was started
    spec = json.loads((shot / "shot.json").read_text())["spec"]
    assert (spec["inpaint_model"], spec["inpaint_steps"], spec["inpaint_chunk"], spec["inpaint_tile"],
            spec["inpaint_prompt"]) == (inpainter, 2, 4, 128, "snow")


def test_a_still_and_its_depth_become_a_one_frame_stereo_image(addon_zip, tmp_path):  # noqa: F811
    image = tmp_path / "still.png"
    v, u = np.mgrid[0:H, 0:W]
    cv2.imwrite(str(image), np.stack([u * 2, v * 3, (u + v)], axis=-1).astype(np.uint8))
    depth = np.full((H, W), 5.0, np.float32)
    depth[20:44, 30:60] = 1.5
    np.save(tmp_path / "still_depth.npy", depth)
    shot = tmp_path / "still_shot"
    settings = {"source": "IMAGE", "source_path": str(image), "depth_path": str(tmp_path / "still_depth.npy"),
                "depth_kind": "METRIC", "output_dir": str(shot), "samples": 4, "interocular": 0.2}
    found = blender("run_twice", addon_zip, {"settings": settings}, tmp_path / "user")
    assert found["result"] == ["FINISHED"], found.get("error")
    for kind, ext in (("eyes", "exr"), ("masks", "png"), ("filled", "png")):
        assert sorted(os.listdir(shot / kind / "left")) == [f"000001.{ext}"]
    sbs = cv2.imread(str(shot / "out" / "frames" / "sbs" / "sbs_000001.png"))
    assert sbs.shape == (H, 2 * W, 3)
    left, right = sbs[:, :W].astype(int), sbs[:, W:].astype(int)
    assert np.abs(left - right).mean() > 1  # two different eyes: the near box shifts between them
    assert found["points_per_frame"] == [W * H] and found["clouds"] == ["still_shot cloud"]


def test_cancel_during_denoising_stops_the_generation_and_changes_nothing(addon_zip, models, tmp_path):  # noqa: F811
    shot = tmp_path / "sh040"
    settings = prompt_settings(models, shot, steps=400)  # long enough that the cancel lands mid-way
    found = blender("cancel_generation", addon_zip, {"settings": settings}, tmp_path / "user")
    assert found["cancelled"] and "kept" in found["cancelled"]
    steps = [done for stage, done, total in found["seen"] if stage == "generate"]
    assert steps and 1 <= max(steps) < 400
    print(f"\ncancel during denoising: stopped {found['stopped_after']:.2f} s after it, at step {max(steps)} of 400")
    assert not found["running_after"] and found["unchanged"]
    take = json.loads((Path(found["take"]) / "shot.json").read_text())["generate"]
    assert not take["complete"] and not (Path(found["take"]) / "generated").exists()
    assert not (shot / "shot.json").exists()  # the shot itself was never started


def test_image_to_video_takes_and_a_script_on_another_scene(addon_zip, models, tmp_path):  # noqa: F811
    """A still and a tiny LTX image-to-video model make a clip; a new seed makes a second take; choosing the
    first take again brings its settings and its video back. All through run_shot on a scene that is not the
    current one."""
    still = tmp_path / "still.png"
    cv2.imwrite(str(still), np.full((H, W, 3), 120, np.uint8))
    i2v = tiny_models.ltx_image_to_video(tmp_path / "tiny-i2v")
    shot = tmp_path / "sh050"
    settings = {"source": "IMAGE", "source_path": str(still), "video_model": i2v, "prompt": "a dog",
                "num_frames": 9, "height": H, "width": W, "steps": STEPS, "seed": 3, "depth_model": models["depth"],
                "output_dir": str(shot), "eye_renderer": "SPLATTER"}
    found = blender("takes", addon_zip, {"settings": settings}, tmp_path / "user")
    takes = Path(str(shot) + ".takes")
    assert found["takes"] == ["take_001", "take_002"]
    first, second, restored = found["seeds"]
    assert second != first and restored == first
    assert found["source"] == str(takes / "take_001" / "generated")  # the first take's video, used again
    for take, seed in (("take_001", first), ("take_002", second)):
        record = json.loads((takes / take / "shot.json").read_text())["generate"]
        assert record["seed"] == seed and record["frames"] == 9 and record["settings"]["image"]["path"] == str(still)
        assert record["pipeline"] == "LTXImageToVideoPipeline"
    assert found["again"]["frames"] == 9 and found["again"]["videos"]
    assert found["objects_in_current"] == ["Camera", "Cube", "Light"]  # the script's scene got the shot
    # The shot lands in the script's scene, whose frame range (Blender's default) is left as it was.
    assert "sh050 cloud" in found["objects_in_shot_scene"] and found["frames"] == [1, 250]


def test_a_plate_without_depth_files_gets_its_depth_from_the_depth_model(addon_zip, models, tmp_path):  # noqa: F811
    from test_addon import make_clip

    plate, _ = make_clip(tmp_path / "clip", W, H, 3)
    shot = tmp_path / "sh060"
    settings = {"source": "VIDEO", "source_path": str(plate), "depth_model": models["depth"],
                "output_dir": str(shot), "eye_renderer": "SPLATTER"}
    found = blender("run_twice", addon_zip, {"settings": settings}, tmp_path / "user")
    assert found["result"] == ["FINISHED"], found.get("error")
    assert sorted(os.listdir(shot / "estimated_depth")) == ["000001.exr", "000002.exr", "000003.exr", "model.json"]
    assert json.loads((shot / "shot.json").read_text())["spec"]["depth_model"] == models["depth"]
    assert (shot / "out" / "video" / "sh060_sbs.mp4").exists() and found["points_per_frame"][0] > 0


def test_panels_show_the_model_settings_and_which_depth_runs(addon_zip, tmp_path):  # noqa: F811
    cases = {
        "prompt": {"source": "PROMPT", "depth_path": "", "depth_model": "some/depth", "inpaint": "MODEL"},
        "both_depths": {"source": "VIDEO", "depth_path": "/d.npy", "depth_model": "some/depth",
                        "inpaint": "BACKGROUND"},
        "image_to_video": {"source": "IMAGE", "video_model": "some/i2v", "depth_path": ""},
    }
    found = blender("panels", addon_zip, {"settings": {}, "cases": cases}, tmp_path / "user")["shown"]
    props = lambda case, panel: [name for kind, name in found[f"{case} STEREOFORGE_PT_{panel}"] if kind == "prop"]
    labels = lambda case, panel: [text for kind, text in found[f"{case} STEREOFORGE_PT_{panel}"] if kind == "label"]
    operators = lambda case, panel: [n for kind, n in found[f"{case} STEREOFORGE_PT_{panel}"] if kind == "operator"]
    assert props("prompt", "source") == ["source", "prompt", "negative_prompt", "video_model", "num_frames", "width",
                                         "height", "steps", "guidance", "seed", "take", "frame_first", "frame_last"]
    assert {"stereoforge.new_seed", "stereoforge.refresh_models"} <= set(operators("prompt", "source"))
    assert labels("prompt", "depth") == ["The Depth Model estimates the depth"]
    assert props("prompt", "inpaint") == ["inpaint", "inpaint_model", "inpaint_prompt", "inpaint_steps",
                                          "inpaint_chunk", "inpaint_tile"]
    assert labels("both_depths", "depth") == ["Depth Path runs; the Depth Model is not used"]
    assert props("both_depths", "inpaint") == ["inpaint"]
    assert "video_model" in props("image_to_video", "source") and "seed" in props("image_to_video", "source")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, token: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert server.poll() is None, server.stdout.read()
        try:
            request = urllib.request.Request(url + "/health", headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(request, timeout=5) as r:
                if "torch" in json.loads(r.read())["worker"]:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server did not start")


# -- Ctrl-C in background mode ----------------------------------------------------------------------------------

def _headless_until_eyes(addon_zip, tmp_path, samples: int) -> tuple[subprocess.Popen, Path]:  # noqa: F811
    """``bpy.ops.stereoforge.run()`` in a Blender process (addon_session's headless scenario) on a 24-frame
    clip, returned once Blender has rendered its first eye-frame."""
    from test_addon import make_clip

    plate, depth = make_clip(tmp_path / "clip", W, H, 24)
    shot = tmp_path / "shot"
    settings = {"source": "VIDEO", "source_path": str(plate), "depth_path": str(depth), "depth_kind": "METRIC",
                "output_dir": str(shot), "samples": samples}
    user = tmp_path / "user"
    user.mkdir()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "blender" / "addon_session.py"), "headless", str(addon_zip),
         json.dumps({"settings": settings})], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, BLENDER_USER_RESOURCES=str(user)), cwd=str(user))
    deadline = time.monotonic() + 600
    while not (shot / "eyes" / "right" / "000001.exr").exists():
        assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
        time.sleep(0.05)
    return process, shot


def test_ctrl_c_stops_blenders_eye_render_after_the_current_frame(addon_zip, tmp_path):  # noqa: F811
    import signal

    process, shot = _headless_until_eyes(addon_zip, tmp_path, samples=256)
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=300)
    result = json.loads([line for line in out.splitlines() if line.startswith("RESULT: ")][-1][len("RESULT: "):])
    assert result["result"] == ["CANCELLED"] and "kept" in result["message"]
    assert "stopping after the current frame" in out
    left = os.listdir(shot / "eyes" / "left")
    assert 1 <= len([n for n in left if n.endswith(".exr")]) < 24  # finished frames stay, the rest never began
    assert not (shot / "filled").exists()  # the stages after the eyes did not run


def test_a_second_ctrl_c_stops_blender_during_a_frame(addon_zip, tmp_path):  # noqa: F811
    import signal

    process, shot = _headless_until_eyes(addon_zip, tmp_path, samples=4096)  # frames of seconds each
    process.send_signal(signal.SIGINT)
    time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 130, out[-2000:]
    assert "RESULT: " not in out and "frames finished so far are kept" in out
    assert len(os.listdir(shot / "eyes" / "left")) < 24


# -- the local backend's life -----------------------------------------------------------------------------------

def test_the_local_backend_stops_when_blender_dies(tmp_path):
    """A process that started a local backend is killed (as a crashing Blender is): the backend stops too."""
    script = (f"import sys, time\n"
              f"sys.path.insert(0, {str(ROOT / 'tests')!r}); import addon_modules\n"
              f"client = addon_modules.load('client')\n"
              f"backend = client.LocalBackend(sys.executable); backend.check()\n"
              f"print(backend.server.process.pid, backend.check()['version'], flush=True)\n"
              f"time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    server_pid, version = parent.stdout.readline().split()
    assert version and _alive(int(server_pid))
    parent.kill()  # no atexit, no clean-up: only the closed pipe tells the backend
    parent.wait()
    deadline = time.monotonic() + 60
    while _alive(int(server_pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(int(server_pid))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie (exited, not reaped yet) counts as stopped
        return f.read().split(")")[-1].split()[0] != "Z"
