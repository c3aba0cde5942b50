"""One Blender session for tests/test_addon_models.py: the add-on driving models (a prompt, a still, a depth model).

Run like ``addon_session.py`` (whose helpers it uses)::

    python tests/blender/models_session.py SCENARIO ZIP ARGS_JSON

and it prints ``RESULT: {...}`` last. ``args["prefs"]`` sets the add-on's preferences (e.g. a remote backend).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import urllib.request

import bpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from addon_session import MODULE, configure, install, main, scene_snapshot, shot_state  # noqa: E402


def _setup(zip_path: str, args: dict):
    install(zip_path)
    prefs = bpy.context.preferences.addons[MODULE].preferences
    for name, value in args.get("prefs", {}).items():
        setattr(prefs, name, value)
    configure(args["settings"])
    return importlib.import_module(MODULE + ".client")


def _server(client) -> dict:
    """The local backend this session started: its process id and its worker's (None when remote)."""
    servers = list(client._servers.values())
    if not servers:
        return {"count": 0}
    server = servers[0]
    with urllib.request.urlopen(urllib.request.Request(
            server.url + "/health", headers={"Authorization": f"Bearer {server.token}"}), timeout=10) as r:
        health = json.loads(r.read())
    return {"count": len(servers), "pid": server.process.pid, "worker_pid": health["worker"]["pid"],
            "url": server.url}


def _models_listed() -> dict:
    bpy.ops.stereoforge.refresh_models()
    models = bpy.context.window_manager.stereoforge_models
    return {kind: [m.name for m in getattr(models, kind)] for kind in ("video", "image_video", "depth", "inpaint")}


def run_twice(zip_path: str, args: dict) -> dict:
    """Run the shot with ``bpy.ops.stereoforge.run()``, then again through ``run_shot`` (a resume with
    nothing to do, on the same warm backend)."""
    client = _setup(zip_path, args)
    api = importlib.import_module(MODULE)
    out = {"listed": _models_listed() if args.get("list_models") else None}
    started = time.perf_counter()
    try:
        out["result"] = sorted(bpy.ops.stereoforge.run())
    except RuntimeError as exc:
        out["result"], out["error"] = ["ERROR"], str(exc)
        return out
    out["seconds"] = time.perf_counter() - started
    state = bpy.context.window_manager.stereoforge_job
    shot_dir = os.path.abspath(args["settings"]["output_dir"])
    out.update(message=state.message, video=state.video, server=_server(client), **shot_state(shot_dir))
    out["takes"] = [item[0] for item in importlib.import_module(MODULE + ".takes").enum_items(shot_dir)]
    started = time.perf_counter()
    again = api.run_shot(bpy.context.scene)
    out["resume_seconds"] = time.perf_counter() - started
    out["resume_result"] = again
    out["server_after"] = _server(client)
    return out


def cancel_generation(zip_path: str, args: dict) -> dict:
    """The UI's way of running a job, cancelled (as Esc does) while the video model denoises."""
    client = _setup(zip_path, args)
    jobs = importlib.import_module(MODULE + ".jobs")
    context = bpy.context
    state = context.window_manager.stereoforge_job
    before = scene_snapshot()
    source, depth, backend = jobs.check_inputs(context, jobs.STAGES)
    job = jobs.Job(context, jobs.STAGES, source, depth, backend, interactive=True)
    seen, message = [], None
    started = time.perf_counter()
    try:
        while job.advance() != jobs.DONE:
            seen.append((state.stage, state.done, state.total))
            if state.stage == "generate" and state.done >= 1 and not state.cancel_requested:
                state.cancel_requested = True
                started = time.perf_counter()
            time.sleep(0.02)
    except client.JobCancelled as exc:
        message = str(exc)
    return {"cancelled": message, "stopped_after": time.perf_counter() - started, "seen": seen,
            "running_after": state.running, "unchanged": scene_snapshot() == before, "take": os.path.dirname(source)}


def takes(zip_path: str, args: dict) -> dict:
    """Through ``run_shot`` on a scene that is not the current one: a take, a new seed (the dice) and a second
    take, then the first take chosen again."""
    _setup(zip_path, args)
    api = importlib.import_module(MODULE)
    takes_module = importlib.import_module(MODULE + ".takes")
    scene = bpy.data.scenes.new("sh050")
    current = bpy.context.scene
    settings = args["settings"]
    first = api.run_shot(scene, **settings)
    s = scene.stereoforge
    with bpy.context.temp_override(scene=scene):
        bpy.ops.stereoforge.new_seed()
    second_seed = s.seed
    second = api.run_shot(scene)
    shot_dir = os.path.abspath(settings["output_dir"])
    listed = [item[0] for item in takes_module.enum_items(shot_dir)]
    s.take = "take_001"  # the Take menu: its settings come back
    restored_seed = s.seed
    again = api.run_shot(scene)
    with open(os.path.join(shot_dir, "shot.json")) as f:
        source = json.load(f)["spec"]["source"]
    return {"first": first, "second": second, "again": again, "takes": listed, "seeds": [settings["seed"],
            second_seed, restored_seed], "source": source, "current_scene": current.name,
            "objects_in_current": sorted(o.name for o in current.objects),
            "objects_in_shot_scene": sorted(o.name for o in scene.objects), "frames": [scene.frame_start,
                                                                                   scene.frame_end]}


def panels(zip_path: str, args: dict) -> dict:
    """What the Source, Depth and Inpainting panels show for the model settings (drawn without a window)."""
    from types import SimpleNamespace

    from addon_session import FakeLayout

    _setup(zip_path, args)
    s = bpy.context.scene.stereoforge
    shown = {}
    for case, change in args["cases"].items():
        configure(change)
        for panel in ("STEREOFORGE_PT_source", "STEREOFORGE_PT_depth", "STEREOFORGE_PT_inpaint"):
            drawn = []
            getattr(bpy.types, panel).draw(SimpleNamespace(layout=FakeLayout(drawn)), bpy.context)
            shown[f"{case} {panel}"] = drawn
    return {"shown": shown, "source": s.source}


SCENARIOS = {"run_twice": run_twice, "cancel_generation": cancel_generation, "takes": takes, "panels": panels}


if __name__ == "__main__":
    main(SCENARIOS)
