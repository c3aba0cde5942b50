"""The job server over real HTTP on loopback: uvicorn in a thread, the worker in its own process, tiny models.

Covers the states and phases a job goes through, progress, cancel (of a queued job, and of a running one inside
the denoising loop), a crashed worker, releasing models, auth, path confinement and request validation.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("diffusers")

import httpx  # noqa: E402
import uvicorn  # noqa: E402

import addon_modules  # noqa: E402
import tiny_models  # noqa: E402
from stereoforge.cli import main  # noqa: E402
from stereoforge.cli.serve import check_host  # noqa: E402
from stereoforge.errors import InputError  # noqa: E402
from stereoforge.io.images import write_png  # noqa: E402
from stereoforge.remote import Client  # noqa: E402
from stereoforge.server import MAX_BODY_BYTES, confine, create_app, is_loopback, job_models  # noqa: E402

TOKEN = "s3cret-token"
EYES = ("left", "right")
TERMINAL = ("succeeded", "failed", "cancelled")


class Server:
    def __init__(self, url: str, root: Path):
        self.url, self.root = url, root
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=90)

    def submit(self, body: dict) -> dict:
        response = self.http.post("/jobs", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def job(self, job_id: str) -> dict:
        return self.http.get(f"/jobs/{job_id}").json()

    def wait(self, job_id: str, until=lambda job: job["state"] in TERMINAL, timeout: float = 120.0,
             seen: list | None = None) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if seen is not None:
                seen.append((job["state"], job["phase"], job["progress"]))
            if until(job):
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not get there in {timeout} s: {job}")

    def worker_pid(self, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            worker = self.http.get("/health").json()["worker"]
            if "pid" in worker:
                return worker["pid"]
            time.sleep(0.1)
        raise AssertionError("the worker did not start")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    shared = tmp_path_factory.mktemp("shared")  # a --read-root
    models = root / "models"
    tiny_models.text_to_video_sd(models / "t2v")
    tiny_models.depth_anything(models / "depth")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")  # the worker process inherits it
        mp.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf-home")))
        app = create_app(str(root), token=TOKEN, read_roots=(str(shared),))
        port = free_port()
        srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=srv.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not srv.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        client = Server(f"http://127.0.0.1:{port}", root)
        client.shared = shared
        client.worker_pid()
        yield client
        srv.should_exit = True
        thread.join(timeout=30)


def plate(root: Path, name: str, count: int = 3) -> tuple[str, str]:
    """A clip under ``root``: frames and metric depth (a plane with a near square); returns relative paths."""
    frames = root / name / "frames"
    frames.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        write_png(frames / f"{i + 1:04d}.png", rng.integers(0, 255, (32, 48, 3), dtype=np.uint8))
    depth = np.full((count, 32, 48), 5.0, np.float32)
    depth[:, 8:24, 16:32] = 2.0
    np.save(root / name / "depth.npy", depth)
    return f"{name}/frames", f"{name}/depth.npy"


def generate_body(output_dir: str, steps: int = 2, frames: int = 3) -> dict:
    return {"kind": "generate", "prompt": "a teddy bear dancing in the snow", "output_dir": output_dir,
            "video_model": "models/t2v", "depth_model": "models/depth", "num_frames": frames, "height": 32,
            "width": 48, "steps": steps, "seed": 5, "device": "cpu"}


# ---------------------------------------------------------------------------------------- the contract


def test_health_names_the_version_and_the_workers_device(server):
    health = server.http.get("/health").json()
    assert health["status"] == "ok" and health["version"]
    assert health["worker"]["device"] == "cpu" and health["worker"]["torch"]
    assert health["root"] == os.path.realpath(server.root)


def test_models_lists_the_servers_model_folders(server):
    models = server.http.get("/models").json()
    folders = {stage: [m for m in found if m["where"] == "folder"] for stage, found in models.items()}
    assert [m["class_name"] for m in folders["video"]] == ["TextToVideoSDPipeline"]
    assert folders["depth"][0]["detail"] == "relative" and folders["inpaint"] == []


def test_a_token_is_required_and_checked(server):
    bare = httpx.get(f"{server.url}/health")
    assert bare.status_code == 401 and bare.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{server.url}/health", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert httpx.post(f"{server.url}/jobs", json={}).status_code == 401
    assert httpx.post(f"{server.url}/release").status_code == 401


@pytest.mark.parametrize("body,field,needle", [
    ({"kind": "convert", "source": "x", "output_dir": "a", "crf": "high"}, "crf", "valid integer"),
    ({"kind": "convert", "source": "x", "output_dir": "a", "interocular_mm": 65}, "interocular_mm", "Extra"),
    ({"kind": "generate", "prompt": "a cat", "video_model": "models/t2v"}, "output_dir", "required"),
    ({"kind": "generate", "prompt": "a cat", "output_dir": "a", "video_model": "m", "trust_remote_code": True},
     "trust_remote_code", "--allow-remote-code"),
    ({"kind": "convert", "source": "x", "output_dir": "a", "depth": "d", "depth_model": "m"}, None, "either --depth"),
    ({"kind": "render", "output_dir": "a"}, None, "does not match any of the expected tags"),
])
def test_bad_bodies_are_422_naming_the_field(server, body, field, needle):
    response = server.http.post("/jobs", json=body)
    assert response.status_code == 422
    errors = response.json()["detail"]
    if field is not None:
        assert any(e["loc"][-1] == field and needle in e["msg"] for e in errors), errors
    else:
        assert any(needle in e["msg"] for e in errors), errors


def test_output_folders_stay_inside_the_root(server, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (server.root / "escape").symlink_to(outside, target_is_directory=True)
    for output_dir in ("../x", "shots/../../x", str(outside / "shot"), "escape/shot", "escape"):
        response = server.http.post("/jobs", json={**generate_body("x"), "output_dir": output_dir})
        assert response.status_code == 422, output_dir
        error = response.json()["detail"][0]
        assert error["loc"][-1] == "output_dir" and ("root" in error["msg"] or "'..'" in error["msg"])
    assert list(outside.iterdir()) == []


def test_confine_takes_relative_and_absolute_paths_inside_the_root(tmp_path):
    root = os.path.realpath(tmp_path)
    assert confine(root, "shots/sh010") == os.path.join(root, "shots", "sh010")
    assert confine(root, os.path.join(root, "sh020")) == os.path.join(root, "sh020")
    for bad in ("", "..", "a/../../b", "/etc", root):
        with pytest.raises(ValueError):
            confine(root, bad)


def test_inputs_stay_inside_the_root_or_a_read_root(server, tmp_path):
    """source, depth and image: absolute paths, '..' and symlinks that lead out are refused like output_dir."""
    source, depth = plate(tmp_path, "secret")
    (server.root / "peek").symlink_to(tmp_path, target_is_directory=True)
    inside, inside_depth = plate(server.root, "plate-inputs")
    body = {"kind": "convert", "source": inside, "depth": inside_depth, "depth_kind": "metric",
            "output_dir": "shots/inputs", "device": "cpu"}
    for field, bad in (("source", str(tmp_path / source)), ("source", f"../{tmp_path.name}/{source}"),
                       ("depth", "peek/secret/depth.npy"), ("source", "peek/secret/frames")):
        response = server.http.post("/jobs", json={**body, field: bad})
        assert response.status_code == 422, (field, bad)
        error = response.json()["detail"][0]
        assert error["loc"][-1] == field and ("not inside" in error["msg"] or "'..'" in error["msg"]), error
    image = {**generate_body("shots/img"), "image": str(tmp_path / source / "0001.png")}
    response = server.http.post("/jobs", json=image)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"][-1] == "image"
    assert not (server.root / "shots" / "inputs").exists()

    shared_source, shared_depth = plate(server.shared, "plate-shared")  # a --read-root is read from
    job = server.submit({**body, "source": str(server.shared / shared_source),
                         "depth": str(server.shared / shared_depth), "output_dir": "shots/shared"})
    assert server.wait(job["id"])["state"] == "succeeded"
    assert len(list((server.root / "shots" / "shared" / "source").glob("*.png"))) == 3


def test_model_folders_stay_inside_the_root_a_read_root_or_a_models_dir(server, tmp_path):
    """A model is a hub id or a folder; a folder elsewhere on the server's machine (absolute, '..', a symlink
    out) is refused like an input, naming the field. Hub ids pass as they are (checked when loaded)."""
    tiny_models.depth_anything(tmp_path / "depth-outside")
    (server.root / "models-link").symlink_to(tmp_path, target_is_directory=True)
    inside, inside_depth = plate(server.root, "plate-models")
    body = {"kind": "convert", "source": inside, "depth": inside_depth, "depth_kind": "metric",
            "output_dir": "shots/models", "device": "cpu"}
    for field, bad in (("inpaint_model", str(tmp_path / "depth-outside")), ("depth_model", "../outside"),
                       ("depth_model", "models-link/depth-outside")):
        response = server.http.post("/jobs", json={**body, field: bad})
        assert response.status_code == 422, (field, bad)
        error = response.json()["detail"][0]
        assert error["loc"][-1] == field and ("not inside" in error["msg"] or "'..'" in error["msg"]), error
    generate = server.http.post("/jobs", json={**generate_body("shots/models-gen"),
                                               "video_model": str(tmp_path / "depth-outside")})
    assert generate.status_code == 422 and generate.json()["detail"][0]["loc"][-1] == "video_model"
    assert not (server.root / "shots" / "models").exists()

    _, generate = job_models(str(server.root), model_dirs=(str(tmp_path),))  # serve --models-dir TMP
    accepted = generate(**{**generate_body("shots/m"), "video_model": str(tmp_path / "depth-outside"),
                           "depth_model": "org/some-hub-model"})
    assert accepted.video_model == os.path.realpath(tmp_path / "depth-outside")
    assert accepted.depth_model == "org/some-hub-model"


def test_a_symlink_swapped_before_the_job_starts_is_refused_then(server, tmp_path):
    """Paths are checked again when the job starts: a folder swapped for a link that leads out between the
    job's acceptance and its start fails the job, and nothing outside is read."""
    plate(tmp_path, "secret")
    plate(server.root, "plate-swap")
    blocker = server.submit(generate_body("shots/blocker", steps=400, frames=2))
    server.wait(blocker["id"], until=lambda j: j["state"] == "running")
    job = server.submit({"kind": "convert", "source": "plate-swap/frames", "depth": "plate-swap/depth.npy",
                         "depth_kind": "metric", "output_dir": "shots/swapped", "device": "cpu"})
    (server.root / "plate-swap").rename(server.root / "plate-before")
    (server.root / "plate-swap").symlink_to(tmp_path / "secret", target_is_directory=True)
    server.http.post(f"/jobs/{blocker['id']}/cancel")
    job = server.wait(job["id"])
    assert job["state"] == "failed" and "not inside" in job["error"], job
    assert not (server.root / "shots" / "swapped" / "source").exists()


def test_a_large_body_is_413_and_long_fields_are_not_echoed(server):
    big = {"kind": "convert", "source": "x", "output_dir": "a", "inpaint_prompt": "z" * (MAX_BODY_BYTES + 1)}
    response = server.http.post("/jobs", json=big)
    assert response.status_code == 413 and "larger than this server takes" in response.json()["detail"]

    def chunks():  # no Content-Length: the server counts what arrives
        yield b'{"kind": "convert", "inpaint_prompt": "'
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b"z" * 65536
        yield b'"}'

    response = server.http.post("/jobs", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert server.http.get("/health").json()["status"] == "ok"

    prompt = "a very long prompt " * 500
    refused = server.http.post("/jobs", json={"kind": "convert", "source": "x", "output_dir": "a", "depth": "d",
                                              "depth_model": "m", "inpaint_prompt": prompt})
    assert refused.status_code == 422 and len(refused.content) < 2000  # the body is not echoed in the error

    source, depth = plate(server.root, "plate-long-field")
    job = server.submit({"kind": "convert", "source": source, "depth": depth, "depth_kind": "metric",
                         "output_dir": "shots/long-field", "device": "cpu", "inpaint_prompt": prompt})
    shown = server.job(job["id"])["spec"]["inpaint_prompt"]
    assert len(shown) < 300 and shown.endswith(f"({len(prompt)} characters)")
    assert len(server.http.get("/jobs").content) < 100_000
    server.wait(job["id"])


def test_the_docs_need_the_token(server):
    for path in ("/openapi.json", "/docs"):
        assert httpx.get(f"{server.url}{path}").status_code == 401, path
        assert server.http.get(path).status_code == 200, path
    assert "/jobs" in server.http.get("/openapi.json").json()["paths"]
    assert httpx.get(f"{server.url}/redoc").status_code in (401, 404)


def test_unknown_jobs_are_404(server):
    assert server.http.get("/jobs/nope").status_code == 404
    assert server.http.post("/jobs/nope/cancel").status_code == 404


def test_another_address_needs_a_token(tmp_path, capsys):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("gpu-box")
    check_host("0.0.0.0", "token")
    with pytest.raises(InputError, match="--token"):
        check_host("0.0.0.0", None)
    assert main(["serve", "--host", "0.0.0.0", "--root", str(tmp_path), "--token", ""]) == 2
    assert "give a --token" in capsys.readouterr().err
    assert main(["serve", "--root", str(tmp_path), "--read-root", str(tmp_path / "nowhere")]) == 2
    assert "--read-root" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ jobs


def test_a_convert_job_goes_through_its_phases_to_a_stereo_shot(server):
    source, depth = plate(server.root, "plate1")
    job = server.submit({"kind": "convert", "source": source, "depth": depth, "depth_kind": "metric",
                         "output_dir": "shots/convert1", "layouts": ["sbs", "separate"], "device": "cpu",
                         "keep": ["filled"]})
    assert job["state"] in ("queued", "running")
    seen = []
    job = server.wait(job["id"], seen=seen)
    assert job["state"] == "succeeded", job["error"]
    assert "running" in [state for state, _, _ in seen] and job["phase"] == "encoding"
    assert all(0.0 <= p <= 1.0 for _, _, p in seen)
    assert job["progress"] == 1.0
    shot = server.root / "shots" / "convert1"
    assert job["outputs"]["shot_dir"] == str(shot)
    assert all(os.path.exists(v) for v in job["outputs"]["videos"]) and len(job["outputs"]["videos"]) == 3
    assert len(list((shot / "filled" / "left").glob("*.png"))) == 3


def test_a_generate_job_makes_a_finished_stereo_shot(server):
    # Enough denoising steps that a poll every 50 ms sees the generating phase (2 steps of the tiny model took
    # less: the fresh-clone CI once saw loading model, then encoding).
    job = server.submit(generate_body("shots/gen1", steps=12))
    seen = []
    job = server.wait(job["id"], seen=seen)
    assert job["state"] == "succeeded", (job["error"], job["log"])
    phases = [phase for _, phase, _ in seen]
    assert phases.index("loading model") < phases.index("generating") and job["phase"] == "encoding"
    shot = server.root / "shots" / "gen1"
    for eye in EYES:  # a pure backend run hands them over in memory: none is kept
        for kind in ("eyes", "masks", "filled"):
            assert not (shot / kind / eye).exists()
    assert (shot / "out" / "video" / "gen1_sbs.mp4").stat().st_size > 0
    meta = json.loads((shot / "shot.json").read_text())
    assert meta["generate"]["seed"] == 5 and meta["generate"]["model"]["class"] == "TextToVideoSDPipeline"
    assert meta["models"]["depth"]["kind"] == "relative"
    assert job["result"]["generate"]["frames"] == 3
    health = server.http.get("/health").json()
    assert set(health["loaded"]) == {"video", "depth"}  # kept for the next job


def test_cancel_a_queued_job_and_a_running_one_mid_denoising(server):
    running = server.submit(generate_body("shots/long", steps=400, frames=2))
    queued = server.submit(generate_body("shots/never"))
    job = server.wait(running["id"], until=lambda j: j["phase"] == "generating" and j["progress"] > 0)
    assert job["state"] == "running" and 0 < job["progress"] < 1
    assert server.job(queued["id"])["state"] == "queued"

    cancelled = server.http.post(f"/jobs/{queued['id']}/cancel").json()
    assert cancelled["state"] == "cancelled"
    assert server.http.post(f"/jobs/{running['id']}/cancel").json()["cancel_requested"]
    job = server.wait(running["id"])
    assert job["state"] == "cancelled" and "denoising step" in job["error"]
    assert not (server.root / "shots" / "never").exists()
    assert server.http.post(f"/jobs/{running['id']}/cancel").status_code == 409
    meta = json.loads((server.root / "shots" / "long" / "shot.json").read_text())
    assert meta["generate"]["complete"] is False  # resumable: the same job again starts the take over


def test_a_worker_that_dies_fails_its_job_and_the_server_goes_on(server):
    pid = server.worker_pid()
    job = server.submit(generate_body("shots/crash", steps=400, frames=2))
    server.wait(job["id"], until=lambda j: j["phase"] == "generating")
    os.kill(pid, signal.SIGKILL)
    job = server.wait(job["id"])
    assert job["state"] == "failed" and "worker process stopped" in job["error"]
    assert server.worker_pid() != pid
    source, depth = plate(server.root, "plate2", count=2)
    after = server.submit({"kind": "convert", "source": source, "depth": depth, "depth_kind": "metric",
                           "output_dir": "shots/after-crash", "device": "cpu"})
    assert server.wait(after["id"])["state"] == "succeeded"


def test_a_killed_servers_worker_stops_its_job_and_exits(tmp_path):
    """``stereoforge serve`` killed outright (SIGKILL: no "stop" reaches its worker) while a job runs: the
    worker stops the job between two steps and exits, instead of holding its models and memory for nobody."""
    root = tmp_path / "root"
    tiny_models.text_to_video_sd(root / "models" / "t2v")
    tiny_models.depth_anything(root / "models" / "depth")
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "backend"),
                                          os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-m", "stereoforge.cli", "serve", "--root", str(root), "--port",
                                str(port), "--token", TOKEN], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    pid = None
    try:
        server = Server(f"http://127.0.0.1:{port}", root)
        deadline = time.monotonic() + 60
        while True:
            try:
                pid = server.worker_pid()
                break
            except httpx.TransportError:  # not listening yet
                assert process.poll() is None and time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        job = server.submit(generate_body("shots/orphan", steps=400, frames=2))
        server.wait(job["id"], until=lambda j: j["phase"] == "generating")
        process.kill()
        process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pid), "the worker of a killed server still runs"
    finally:
        process.kill()
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, ended and waiting for its parent to read it, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_release_frees_the_models(server):
    job = server.submit(generate_body("shots/gen2", frames=2))
    assert server.wait(job["id"])["state"] == "succeeded"
    released = server.http.post("/release").json()
    assert released["released"] and "video" in released["stages"]
    assert server.http.get("/health").json()["loaded"] == {}


def test_the_cli_runs_a_convert_job_on_the_server(server, capsys):
    """``stereoforge convert --server URL``: the job runs on the server, the CLI follows it and reports the
    videos; a wrong token is one error line naming the server's answer."""
    source, depth = plate(server.root, "plate-cli")
    args = ["convert", source, "--depth", depth, "--depth-kind", "metric", "-o", "shots/cli1", "--device", "cpu",
            "--server", server.url]
    assert main([*args, "--token", "wrong", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ("403" in err or "401" in err) and server.url in err
    assert main([*args, "--token", TOKEN, "--progress", "json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # progress in the job's own counts (the frames of a stage: 3), as the add-on's client shows it
    stages = [line for line in lines if "stage" in line]
    assert stages and all(0 <= line["done"] <= line["total"] <= 3 for line in stages), stages
    finished = lines[-1]
    assert finished["event"] == "finished" and finished["frames"] == 3
    video = server.root / "shots" / "cli1" / "out" / "video" / "cli1_sbs.mp4"
    assert finished["videos"] == [str(video)] and video.stat().st_size > 0


def test_the_addons_remote_backend_runs_its_stages_on_the_server(server):
    """The add-on's RemoteBackend: check, then the two halves the add-on runs around Blender's eye render."""
    client = addon_modules.load("client")
    backend = client.make_backend("REMOTE", url=server.url, token=TOKEN)
    found = backend.check()
    assert found["version"] and "stereoforge" in client.describe(found)
    source, depth = plate(server.root, "plate-addon")
    spec = {"source": str(server.root / source), "depth": str(server.root / depth), "depth_kind": "metric",
            "output_dir": str(server.root / "shots" / "addon1"), "device": "cpu", "layouts": ["sbs"]}
    events = []
    result = backend.start({**spec, "stages": ["ingest", "cloud"]}).wait(on_progress=events.append)
    shot = server.root / "shots" / "addon1"
    assert result["event"] == "finished" and (shot / "cloud.usdc").exists() and not (shot / "eyes").exists()
    assert events and all(0 <= e["done"] <= e["total"] for e in events)
    result = backend.start(spec).wait()
    assert result["videos"] == [str(shot / "out" / "video" / "addon1_sbs.mp4")]
    with pytest.raises(client.BackendError, match="401|403"):
        client.make_backend("REMOTE", url=server.url, token="wrong").check()
    with pytest.raises(client.BackendError, match="cannot reach"):
        client.make_backend("REMOTE", url=f"http://127.0.0.1:{free_port()}").check()


def test_the_addon_and_the_command_line_tell_a_refused_field_alike(server):
    """Both clients send through stereoforge/http_json.py (the add-on through its copy): a 422 names the field
    the same way in each."""
    client = addon_modules.load("client")
    body = {"kind": "convert", "source": "plate.png", "output_dir": "../outside"}
    with pytest.raises(client.BackendError) as from_addon:
        client.make_backend("REMOTE", url=server.url, token=TOKEN).request("POST", "/jobs", body)
    with pytest.raises(InputError) as from_cli:
        Client(server.url, TOKEN).request("POST", "/jobs", body)
    addon_detail = str(from_addon.value).split("answered 422: ", 1)[1]
    cli_detail = str(from_cli.value).split("refused POST /jobs: 422 ", 1)[1]
    assert addon_detail == cli_detail and addon_detail.startswith("convert.output_dir: Value error, ")
