"""The add-on's side of the boundary with the backend: a small client, standard library only (no ``bpy``).

The add-on asks a backend for two things: what it is (:meth:`LocalBackend.check`) and to run a convert job on a
spec (:meth:`LocalBackend.start`), a dict with the field names of the backend's ``ConvertSpec`` (``source``,
``output_dir``, ``depth``, ``depth_kind``, ``interocular``, ``stages``...). A job is polled, never waited on in
the UI: :meth:`ConvertJob.poll` returns the progress events that arrived since the last call, without blocking.

Two backends answer the same two methods, chosen in :func:`make_backend`: :class:`LocalBackend` runs the
``stereoforge`` command line as a child process with ``--progress json``; :class:`RemoteBackend` sends the job to a
StereoForge job server over HTTP. The rest of the add-on does not know which.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

#: Seconds a cancelled backend gets to stop on its own (it keeps every finished frame) before it is killed.
CANCEL_GRACE_S = 10.0
#: Exit status of the backend for bad input, and for a job stopped by SIGINT.
EXIT_INPUT_ERROR = 2
EXIT_CANCELLED = 130

_PROBE = r"""
import importlib.util, json, sys
found = {"python": sys.executable}
try:
    import stereoforge
except Exception as exc:
    found["error"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(found)); sys.exit(0)
found["version"] = stereoforge.__version__
found["models"] = importlib.util.find_spec("stereoforge.models") is not None
if "--full" in sys.argv:
    try:
        import torch
        found["torch"] = torch.__version__
        found["devices"] = ["cpu"] + [f"cuda:{i} ({torch.cuda.get_device_name(i)})"
                                       for i in range(torch.cuda.device_count())]
    except Exception as exc:
        found["error"] = f"torch does not load: {type(exc).__name__}: {exc}"
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


def spec_to_cli(spec: dict) -> list[str]:
    """A convert spec (``ConvertSpec`` field names) -> the arguments of ``stereoforge convert``.

    ``None`` values are left out, so the backend works them out (e.g. the convergence distance from the clip).
    """
    spec = dict(spec)
    args = ["convert", str(spec.pop("source")), "-o", str(spec.pop("output_dir"))]
    for name, value in spec.items():
        if value is None:
            continue
        flag = "--layout" if name == "layouts" else "--" + name.replace("_", "-")
        if name in ("layouts", "stages"):
            value = ",".join(value)
        elif name == "frames":
            first, last = value
            value = f"{first or ''}:{last or ''}"
        elif name == "cloud":
            if not value:
                args.append("--no-cloud")
            continue
        elif isinstance(value, bool):  # a switch (--floating-window): there when on
            if value:
                args.append(flag)
            continue
        args += [flag, str(value)]
    return args + ["--progress", "json"]


class ConvertJob:
    """A running ``stereoforge convert`` child process, read without blocking.

    Two threads read the child's stdout (one JSON object per line) and stderr into a queue, so the pipes never
    fill up however long the job runs.
    """

    def __init__(self, command: list[str], env: dict | None = None):
        self.command = command
        self.result: dict | None = None
        self.error: str | None = None
        self._stderr: list[str] = []
        self._events: queue.Queue = queue.Queue()
        self._cancelled = False
        self._cancel_time: float | None = None
        kwargs = {}
        if os.name == "nt":  # so that CTRL_BREAK reaches the backend alone, as SIGINT does on POSIX
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        try:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, text=True, bufsize=1, env=env, **kwargs)
        except OSError as exc:
            raise BackendError(f"cannot start the backend ({command[0]}): {exc.strerror or exc}; set the "
                               "backend's Python in StereoForge's preferences") from None
        self._threads = [threading.Thread(target=self._read, args=(self.process.stdout, True), daemon=True),
                         threading.Thread(target=self._read, args=(self.process.stderr, False), daemon=True)]
        for thread in self._threads:
            thread.start()

    def _read(self, stream, is_stdout: bool) -> None:
        for line in stream:
            line = line.rstrip("\n")
            if not is_stdout:
                self._stderr.append(line)
                del self._stderr[:-40]
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                self._events.put(event)
        stream.close()

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def poll(self) -> list[dict]:
        """The progress events ``{"stage", "done", "total"}`` since the last call; never blocks.

        Raises :class:`BackendError` when the backend failed and :class:`JobCancelled` when it stopped after a
        cancel. When it finished, :attr:`result` holds its ``finished`` event (``shot_dir``, ``videos``...).
        """
        events = []
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            if event.get("event") == "finished":
                self.result = event
            elif event.get("event") == "error":
                self.error = str(event.get("message"))
            else:
                events.append(event)
        if self._cancel_time is not None and self.running and time.monotonic() - self._cancel_time > CANCEL_GRACE_S:
            self.process.kill()
        if not self.running:
            self._finish()
        return events

    def _finish(self) -> None:
        code = self.process.wait()
        for thread in self._threads:
            thread.join(timeout=5)
        while not self._events.empty():  # the last lines may arrive with the exit
            event = self._events.get_nowait()
            if event.get("event") == "finished":
                self.result = event
            elif event.get("event") == "error":
                self.error = str(event.get("message"))
        if self._cancelled or code == EXIT_CANCELLED:
            raise JobCancelled("cancelled; the frames finished so far are kept, run again to resume")
        if self.error:
            raise BackendError(self.error)
        if code != 0:
            tail = "\n".join(line for line in self._stderr[-8:] if line.strip())
            raise BackendError(f"the backend stopped with exit status {code}: {tail or 'no message'}")
        if self.result is None:
            raise BackendError("the backend ended without reporting a result")

    def wait(self, on_progress=None, interval: float = 0.1) -> dict:
        """Block until the job ends (background mode); returns the result. Ctrl-C cancels the job."""
        try:
            while True:
                for event in self.poll():
                    if on_progress:
                        on_progress(event)
                if self.result is not None and not self.running:
                    return self.result
                time.sleep(interval)
        except KeyboardInterrupt:
            self.cancel()
            self.process.wait()
            raise JobCancelled("cancelled; the frames finished so far are kept, run again to resume") from None

    def cancel(self) -> None:
        """Ask the backend to stop (SIGINT: it finishes nothing half-written); killed if it takes too long."""
        if not self.running or self._cancelled:
            return
        self._cancelled = True
        self._cancel_time = time.monotonic()
        try:
            self.process.send_signal(signal.CTRL_BREAK_EVENT if os.name == "nt" else signal.SIGINT)
        except (OSError, ValueError):
            self.process.terminate()


class LocalBackend:
    """The backend installed in a Python environment on this machine, run as ``python -m stereoforge.cli``."""

    def __init__(self, python: str, device: str = "auto"):
        self.python = python
        self.device = device

    def _env(self) -> dict:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        if self.python != sys.executable:  # Blender's Python settings must not leak into another Python
            env.pop("PYTHONHOME", None)
            env.pop("PYTHONPATH", None)
        return env

    def check(self, full: bool = False, timeout: float = 120.0) -> dict:
        """What the backend is: ``{"python", "version", "models", ("torch", "devices" when full)}``.

        Raises :class:`BackendError` naming what is missing and how to fix it.
        """
        if not self.python:
            raise BackendError("no backend: Blender's Python cannot import stereoforge; set the Python of an "
                               "environment where it is installed in Preferences > Add-ons > StereoForge "
                               "(e.g. /path/to/venv/bin/python after 'pip install stereoforge')")
        if not os.path.isfile(self.python):
            raise BackendError(f"the backend Python '{self.python}' does not exist; set the Python of an "
                               "environment where stereoforge is installed in StereoForge's preferences")
        command = [self.python, "-c", _PROBE] + (["--full"] if full else [])
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=self._env(),
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackendError(f"cannot run the backend Python '{self.python}': {exc}") from None
        try:
            found = json.loads(done.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise BackendError(f"'{self.python}' is not a working Python: {done.stderr.strip()[-300:]}") from None
        if "version" not in found:
            raise BackendError(f"'{self.python}' cannot import stereoforge ({found.get('error')}); install it "
                               f"there with: {self.python} -m pip install stereoforge")
        if found.get("error"):
            raise BackendError(f"stereoforge {found['version']} in '{self.python}': {found['error']}; reinstall "
                               "torch in that environment")
        return found

    def start(self, spec: dict) -> ConvertJob:
        """Start a convert job on ``spec`` (ConvertSpec field names; ``stages`` picks what runs)."""
        spec = {"device": self.device, **spec}
        return ConvertJob([self.python, "-m", "stereoforge.cli"] + spec_to_cli(spec), env=self._env())


class RemoteJob:
    """A convert job on a StereoForge job server (``stereoforge serve``), polled over HTTP like a ConvertJob."""

    def __init__(self, backend: RemoteBackend, spec: dict):
        self.backend = backend
        self.result: dict | None = None
        self._last: tuple | None = None
        self._cancelled = False
        job = backend.request("POST", "/jobs", {"kind": "convert", **spec})
        self.id, self._state = job["id"], job["state"]

    @property
    def running(self) -> bool:
        return self._state not in ("succeeded", "failed", "cancelled")

    def poll(self) -> list[dict]:
        """The progress since the last call as ``{"stage", "done", "total"}`` events (one GET, short timeout)."""
        job = self.backend.request("GET", f"/jobs/{self.id}")
        self._state = job["state"]
        events = []
        if job.get("stage") and (job["stage"], job["progress"]) != self._last:
            self._last = (job["stage"], job["progress"])
            events.append({"stage": job["stage"], "done": round(job["progress"] * 1000), "total": 1000})
        if self._state == "succeeded":
            self.result = {"event": "finished", **(job.get("result") or {})}
        elif self._state == "failed":
            raise BackendError(f"the job failed on {self.backend.url}: {job.get('error')}")
        elif self._state == "cancelled":
            raise JobCancelled("cancelled; the frames finished so far are kept on the server, run again to resume")
        return events

    def wait(self, on_progress=None, interval: float = 0.25) -> dict:
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
            raise JobCancelled("cancelled; the frames finished so far are kept, run again to resume") from None

    def cancel(self) -> None:
        if self.running and not self._cancelled:
            self._cancelled = True
            try:
                self.backend.request("POST", f"/jobs/{self.id}/cancel")
            except BackendError:
                pass  # it ended meanwhile: the next poll says how


class RemoteBackend:
    """A backend behind a StereoForge job server (``stereoforge serve``), on this machine or another.

    The server reads and writes the paths of the job itself, so the shot folders must be on storage both see
    under the same path (the server's ``--root`` must contain them).
    """

    def __init__(self, url: str, token: str = "", timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        if not self.url:
            raise BackendError("no server URL: set it in StereoForge's preferences (e.g. http://gpubox:8765)")
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read()).get("detail")
            except ValueError:
                detail = exc.reason
            raise BackendError(f"the server {self.url} answered {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise BackendError(f"cannot reach the StereoForge server at {self.url} "
                               f"({getattr(exc, 'reason', exc)}); start it with 'stereoforge serve'") from None

    def check(self, full: bool = False, timeout: float = 10.0) -> dict:
        """What the server is, in :meth:`LocalBackend.check`'s words."""
        health = self.request("GET", "/health")
        worker = health.get("worker", {})
        found = {"python": self.url, "version": health.get("version"), "models": True}
        if "torch" in worker:
            found["torch"] = worker["torch"]
            found["devices"] = [worker.get("gpu") or worker.get("device", "cpu")]
        return found

    def start(self, spec: dict) -> RemoteJob:
        """Start a convert job on ``spec`` (ConvertSpec field names; paths as the server sees them)."""
        return RemoteJob(self, {k: v for k, v in spec.items() if v is not None})


def make_backend(kind: str, python: str = "", url: str = "", token: str = "", device: str = "auto"):
    """The backend the preferences describe: ``kind`` 'LOCAL' (``python``, empty = Blender's own when it has
    stereoforge) or 'REMOTE' (``url`` and ``token``)."""
    if kind == "REMOTE":
        return RemoteBackend(url, token)
    return LocalBackend(python or default_python() or "", device)


def describe(found: dict) -> str:
    """One line for a Blender report from :meth:`LocalBackend.check`'s answer."""
    parts = [f"stereoforge {found['version']} in {found['python']}"]
    if "torch" in found:
        parts.append(f"torch {found['torch']}, devices: {', '.join(found.get('devices', ['cpu']))}")
    parts.append("models backend: installed" if found.get("models") else
                 "models backend: not installed (depth from files only)")
    return "; ".join(parts)
