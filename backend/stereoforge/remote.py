"""``--server URL``: run a convert or generate job on a StereoForge job server and follow it from here.

The job is posted to ``URL/jobs`` and polled until it ends; progress goes to the same callback as a local run,
Ctrl-C asks the server to cancel (the frames finished so far stay on the server). Paths in the job are the
server's: relative ones are read and written under its ``--root``. Each request goes through
:mod:`stereoforge.http_json`, as the Blender add-on's do.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .errors import Cancelled, InputError, StereoForgeError
from .http_json import ServerRefused, Unreachable, request_json
from .shot import ENDED


class ServerError(StereoForgeError):
    """The server ran the job and it failed."""


class Client:
    """A job server at ``url``: its answers as dicts, its refusals and silence as one-line :class:`InputError`."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        try:
            return request_json(self.url, method, path, body, self.token, self.timeout)
        except ServerRefused as exc:
            raise InputError(f"server {self.url} refused {method} {path}: {exc.status} {exc.detail}") from None
        except Unreachable as exc:
            raise InputError(f"cannot reach the StereoForge server at {self.url} ({exc.reason}); start it with "
                             "'stereoforge serve' or check --server") from None


def run_remote(url: str, token: str | None, kind: str, body: dict,
               progress: Callable[[str, int, int], None], log: Callable[[str], None],
               poll_s: float = 0.5) -> dict:
    """Submit a job and follow it to the end; returns the job's result (as a local run would)."""
    client = Client(url, token)
    job = client.request("POST", "/jobs", {"kind": kind, **body})
    log(f"job {job['id']} submitted to {client.url}")
    seen_log = 0
    try:
        while job["state"] not in ENDED:
            time.sleep(poll_s)
            job = client.request("GET", f"/jobs/{job['id']}")
            # The job keeps its last lines only: it counts all it logged, so the new ones are told apart (as the
            # add-on's client does).
            fresh = job["logged"] - seen_log
            for line in (job["log"][-fresh:] if fresh > 0 else []):
                log(line)
            seen_log = job["logged"]
            if job.get("stage"):
                progress(job["stage"], job["done"], job["total"])
    except KeyboardInterrupt:
        client.request("POST", f"/jobs/{job['id']}/cancel")
        raise Cancelled(f"job {job['id']} cancelled on {client.url}; its finished frames stay in "
                        f"'{job['outputs']['shot_dir']}' on the server") from None
    if job["state"] == "cancelled":
        raise Cancelled(f"job {job['id']} was cancelled on the server")
    if job["state"] == "failed":
        raise ServerError(f"job {job['id']} failed on {client.url}: {job['error']}")
    return job["result"]
