"""The add-on's side of the boundary with the backend: one small HTTP client, standard library only (no ``bpy``).

The backend is always a StereoForge job server (``stereoforge serve``), spoken to over HTTP:

- :class:`LocalBackend`: a server on loopback (127.0.0.1, a free port, a random token) that this Blender session
  starts once, with the Python the preferences name, and keeps warm across stages and runs, so a model loads
  once and a resume with nothing to do costs a few requests. It stops when Blender exits (``atexit``) or the
  add-on is disabled, and is started again when it crashed.
- :class:`RemoteBackend`: a server someone else started, on this machine or a GPU box (URL and token).

Both answer the same methods: :meth:`RemoteBackend.check` (what it is), :meth:`RemoteBackend.models` (the
models it has, by stage) and :meth:`RemoteBackend.start` (a ``convert`` or ``generate`` job on a spec with the
backend's field names). A job is polled, never waited on in the UI: :meth:`Job.poll` returns the progress since
the last call (one short request).
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time

from .http_json import ServerRefused, Unreachable, request_json
from .shot_contract import ENDED

#: Seconds a cancelled job gets to stop at its next frame or denoising step before the client stops waiting.
CANCEL_GRACE_S = 30.0
#: Seconds a new local backend may take to start its worker (torch and the models library import there).
START_TIMEOUT_S = 300.0
#: The stages of the backend's model list (``stereoforge models --json``, ``GET /models``).
MODEL_STAGES = ("video", "depth", "inpaint")
#: What a cancelled job says, wherever it stopped.
CANCELLED_MESSAGE = "cancelled; the frames finished so far are kept, run again to resume"

#: Run with the backend's Python before its server starts: a missing package is one clear message, not a server
#: that dies as it starts.
_PROBE = r"""
import importlib.util, json, sys
found = {"python": sys.executable}
try:
    import stereoforge
    found["version"] = stereoforge.__version__
    if importlib.util.find_spec("torch") is None:  # found, not imported: that takes seconds, the server does it
        found["error"] = "torch is not installed"
except Exception as exc:
    found["error"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(found))
"""


class BackendError(Exception):
    """Something the user can fix about the backend or the job: the message says what and how."""


class JobCancelled(Exception):
    """The job was cancelled; the frames finished so far stay in the shot folder."""


def stereoforge_importable_here() -> bool:
    """True when the Python running this code (Blender's) can import the backend package itself."""
    import importlib.util

    return importlib.util.find_spec("stereoforge") is not None


def default_python() -> str | None:
    """The Python to run the backend with when the preferences leave it empty: Blender's own, if it has it."""
    return sys.executable if stereoforge_importable_here() else None


class Job:
    """A ``convert`` or ``generate`` job on a backend, polled over HTTP."""

    def __init__(self, backend: RemoteBackend, kind: str, spec: dict):
        self.backend = backend
        self.kind = kind
        self.result: dict | None = None
        self._last: tuple | None = None
        self._logged = 0  # log lines of the job seen so far
        self._cancel_time: float | None = None
        job = backend.request("POST", "/jobs", {"kind": kind, **spec})
        self.id, self._state = job["id"], job["state"]

    @property
    def running(self) -> bool:
        return self._state not in ENDED

    def poll(self) -> list[dict]:
        """The progress since the last call as ``{"stage", "done", "total"}`` events (frames of a stage, or
        denoising steps while generating) and ``{"event": "notice", "message"}`` for each line the job logged;
        never blocks for long (one GET).

        Raises :class:`BackendError` when the job failed and :class:`JobCancelled` when it stopped after a
        cancel. When it finished, :attr:`result` holds the backend's result (``shot_dir``, ``videos``...).
        """
        job = self.backend.request("GET", f"/jobs/{self.id}")
        self._state = job["state"]
        # Lines the job logged since the last poll (the backend's notices: a rig narrowed for comfort, a stage
        # remade because its settings changed).
        fresh = job.get("logged", 0) - self._logged
        events = [{"event": "notice", "message": line} for line in (job.get("log") or [])[-fresh:]] if fresh > 0 else []
        self._logged += max(fresh, 0)
        if job.get("stage"):
            done, total = job.get("done"), job.get("total")
            if total is None:  # a server older than the add-on: a fraction only
                done, total = round(job["progress"] * 1000), 1000
            if (job["stage"], done, total) != self._last:
                self._last = (job["stage"], done, total)
                events.append({"stage": job["stage"], "done": done, "total": total})
        if self._state == "succeeded":
            self.result = {"event": "finished", **(job.get("result") or {})}
        elif self._state == "failed":
            raise BackendError(self.backend.failure(job.get("error")))
        elif self._state == "cancelled":
            raise JobCancelled(CANCELLED_MESSAGE)
        return events

    def wait(self, on_progress=None, interval: float = 0.1) -> dict:
        """Block until the job ends (background mode); returns the result. Ctrl-C cancels the job."""
        try:
            while True:
                for event in self.poll():
                    if on_progress:
                        on_progress(event)
                if self.result is not None:
                    return self.result
                time.sleep(interval)
        except KeyboardInterrupt:
            self.cancel()
            self.stop()
            raise JobCancelled(CANCELLED_MESSAGE) from None

    def cancel(self) -> None:
        """Ask the backend to stop at the next frame or denoising step (finished frames stay)."""
        if self.running and self._cancel_time is None:
            self._cancel_time = time.monotonic()
            try:
                self.backend.request("POST", f"/jobs/{self.id}/cancel")
            except BackendError:
                pass  # it ended meanwhile: the next poll says how

    def stop(self) -> None:
        """After :meth:`cancel`: wait (a little) until the backend has stopped writing."""
        while self.running and time.monotonic() - (self._cancel_time or 0) < CANCEL_GRACE_S:
            try:
                self.poll()
            except (BackendError, JobCancelled):
                return
            time.sleep(0.05)


class RemoteBackend:
    """A backend behind a StereoForge job server (``stereoforge serve``), on this machine or another."""

    def __init__(self, url: str, token: str = "", timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        if not self.url:
            raise BackendError("no server URL: set it in Preferences > Add-ons > StereoForge (Backend: Remote)")
        try:
            return request_json(self.url, method, path, body, self.token, self.timeout)
        except ServerRefused as exc:
            raise BackendError(f"the server {self.url} answered {exc.status}: {exc.detail}") from None
        except Unreachable as exc:
            raise BackendError(self.unreachable(exc.reason)) from None

    def unreachable(self, reason) -> str:
        return f"cannot reach the StereoForge server at {self.url} ({reason}); start it with 'stereoforge serve'"

    def failure(self, error) -> str:
        return f"the job failed on {self.url}: {error}"

    def check(self) -> dict:
        """What the backend is: ``{"python", "version", ("torch", "devices" once its worker runs)}``.

        Raises :class:`BackendError` naming what is missing and how to fix it.
        """
        health = self.request("GET", "/health")
        worker = health.get("worker", {})
        found = {"python": self.url, "version": health.get("version")}
        if "torch" in worker:
            found["torch"] = worker["torch"]
            found["devices"] = [worker.get("gpu") or worker.get("device", "cpu")]
        return found

    def prepare(self) -> None:
        """Before a job: the server answers (a clear message when it does not)."""
        self.check()

    def ready(self) -> bool:
        """True when jobs can be sent (a remote server is, once :meth:`prepare` reached it)."""
        return True

    def models(self) -> dict[str, list[dict]]:
        """The models the backend has, by stage (``video``, ``depth``, ``inpaint``): each ``{"id", "detail",
        "class_name", ...}``, ``detail`` being ``text-to-video`` or ``image-to-video`` for video models."""
        listed = self.request("GET", "/models")
        return {stage: list(listed.get(stage) or []) for stage in MODEL_STAGES}

    def start(self, spec: dict, kind: str = "convert") -> Job:
        """Start a ``convert`` or ``generate`` job on ``spec`` (the backend's field names; paths as the server
        sees them). ``None`` values are left out: the backend works them out."""
        return Job(self, kind, {k: v for k, v in spec.items() if v is not None})


class LocalBackend(RemoteBackend):
    """The backend installed in a Python environment on this machine: a ``stereoforge serve`` on loopback that
    this Blender session starts on first use and keeps (one per Python)."""

    def __init__(self, python: str):
        super().__init__("")
        self.python = python

    @property
    def server(self) -> _LocalServer | None:
        return _servers.get(self.python)

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        self.ensure()
        return super().request(method, path, body)

    def unreachable(self, reason) -> str:
        log = self.server.log_path if self.server else "its log"
        return (f"the local backend stopped answering ({reason}); it is started again on the next run. What it "
                f"printed is in '{log}'")

    def failure(self, error) -> str:
        return str(error)

    def ensure(self, wait: bool = True) -> None:
        """Start the local server unless one from this session still runs (a crashed one is started again);
        with ``wait``, until it is ready for jobs."""
        server = self.server
        if server is None or not server.alive():
            if server is not None:
                server.stop()
            self.probe()
            server = _servers[self.python] = _LocalServer(self.python)
        self.url, self.token = server.url, server.token
        if wait:
            server.wait_ready(self)

    def prepare(self) -> None:
        """Before a job: see that the backend's Python has stereoforge, and start the server (without waiting:
        :meth:`ready` says when it is, so the UI stays responsive for the seconds it takes)."""
        self.ensure(wait=False)

    def ready(self) -> bool:
        self.ensure(wait=False)
        return self.server.ready(self)

    def probe(self, timeout: float = 120.0) -> dict:
        """Run the backend's Python once to see that it has stereoforge (a clear message when it has not)."""
        if not self.python:
            raise BackendError("no backend: Blender's Python cannot import stereoforge; set the Python of an "
                               "environment where it is installed in Preferences > Add-ons > StereoForge "
                               "(e.g. /path/to/venv/bin/python after 'pip install stereoforge')")
        if not os.path.isfile(self.python):
            raise BackendError(f"the backend Python '{self.python}' does not exist; set the Python of an "
                               "environment where stereoforge is installed in StereoForge's preferences")
        try:
            done = subprocess.run([self.python, "-c", _PROBE], capture_output=True, text=True, timeout=timeout,
                                  env=_env(self.python), stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackendError(f"cannot run the backend Python '{self.python}': {exc}") from None
        try:
            found = json.loads(done.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise BackendError(f"'{self.python}' is not a working Python: {done.stderr.strip()[-300:]}") from None
        if not found.get("version"):
            raise BackendError(f"'{self.python}' cannot import stereoforge ({found.get('error')}); install it "
                               f"there with: {self.python} -m pip install stereoforge")
        if found.get("error"):
            raise BackendError(f"stereoforge {found['version']} in '{self.python}': {found['error']}; install "
                               "torch in that environment")
        return found

    def check(self) -> dict:
        found = super().check()
        found["python"] = self.python
        return found


class _LocalServer:
    """A ``stereoforge serve`` child process on 127.0.0.1 with a random token, writing under ``/`` (the shots of a
    Blender session may be anywhere on this machine; only this session knows the token).

    Its standard input is a pipe that nothing writes to: when Blender ends in any way, a crash included, the
    pipe closes and the server stops (``--stop-with-stdin``), so no backend holds GPU memory after Blender.
    """

    def __init__(self, python: str):
        self.python = python
        self.token = secrets.token_urlsafe(24)
        with socket.socket() as probe:  # a free port, chosen by the system
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.started = time.monotonic()
        self.is_ready = False
        fd, self.log_path = tempfile.mkstemp(prefix="stereoforge-backend-", suffix=".log")
        kwargs = {}
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        else:  # Ctrl-C in the terminal reaches Blender alone; the add-on cancels the job over HTTP
            kwargs["start_new_session"] = True
        env = _env(python)
        env["STEREOFORGE_TOKEN"] = self.token  # not on the command line, where other users could read it
        try:
            with os.fdopen(fd, "w") as log:
                self.process = subprocess.Popen(
                    [python, "-m", "stereoforge.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                     "--root", os.path.abspath(os.sep), "--stop-with-stdin"],
                    stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=env, **kwargs)
        except OSError as exc:
            raise BackendError(f"cannot start the backend ({python}): {exc.strerror or exc}; set the backend's "
                               "Python in StereoForge's preferences") from None

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 8) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "\n".join(line.rstrip() for line in f.readlines()[-lines:] if line.strip())
        except OSError:
            return ""

    def ready(self, backend: LocalBackend) -> bool:
        """True once the server answers and its worker has started (torch imported); never blocks for long.

        Raises :class:`BackendError` when it stopped, or did not start in :data:`START_TIMEOUT_S`.
        """
        if self.is_ready:
            return True
        if not self.alive():
            raise BackendError(f"the local backend ({self.python}) stopped as it started (exit status "
                               f"{self.process.returncode}): {self.log_tail() or 'no message'}")
        try:
            self.is_ready = "torch" in RemoteBackend.request(backend, "GET", "/health").get("worker", {})
        except BackendError:
            pass  # not listening yet
        if not self.is_ready and time.monotonic() - self.started > START_TIMEOUT_S:
            self.stop()
            raise BackendError(f"the local backend ({self.python}) did not start in {START_TIMEOUT_S:.0f} s; "
                               f"what it printed is in '{self.log_path}'")
        return self.is_ready

    def wait_ready(self, backend: LocalBackend) -> None:
        while not self.ready(backend):
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server (it stops its worker, which frees the models' memory)."""
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


#: The local servers of this Blender session, by Python.
_servers: dict[str, _LocalServer] = {}


def stop_local_backends() -> None:
    """Stop every local server this session started (Blender exits, or the add-on is disabled)."""
    while _servers:
        _servers.popitem()[1].stop()


atexit.register(stop_local_backends)


def _env(python: str) -> dict:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if python != sys.executable:  # Blender's Python settings must not leak into another Python
        env.pop("PYTHONHOME", None)
        env.pop("PYTHONPATH", None)
    return env


def make_backend(kind: str, python: str = "", url: str = "", token: str = ""):
    """The backend the preferences describe: ``kind`` 'LOCAL' (``python``, empty = Blender's own when it has
    stereoforge) or 'REMOTE' (``url`` and ``token``)."""
    if kind == "REMOTE":
        return RemoteBackend(url, token)
    return LocalBackend(python or default_python() or "")


def describe(found: dict) -> str:
    """One line for a Blender report from :meth:`RemoteBackend.check`'s answer."""
    parts = [f"stereoforge {found['version']} in {found['python']}"]
    if "torch" in found:
        parts.append(f"torch {found['torch']}, devices: {', '.join(found.get('devices', ['cpu']))}")
    return "; ".join(parts)
