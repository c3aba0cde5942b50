"""One JSON request to a StereoForge job server (``stereoforge serve``), and its failures told apart.

Standard library only: the Blender add-on carries this very file (``addon/http_json.py``, copied by
``stereoforge addon build``; tests/test_shot_contract.py checks the copies are the same), so that the command
line's ``--server`` (:mod:`stereoforge.remote`) and the add-on (``addon/client.py``) speak to a server alike and
tell its errors alike: a refusal with the server's reason (a 422 names each field it refused), or no answer.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request


class ServerRefused(Exception):
    """The server answered with an error status; ``detail`` is its reason."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"{status} {detail}")
        self.status = status
        self.detail = detail


class Unreachable(Exception):
    """No answer: no server at that address, or the network or the server did not respond in time."""

    def __init__(self, reason):
        super().__init__(str(reason))
        self.reason = reason


def request_json(url: str, method: str, path: str, body: dict | None = None, token: str | None = None,
                 timeout: float = 30.0) -> dict:
    """``method`` ``url + path`` with ``body`` as JSON (and the bearer ``token``, if any); the answer's JSON.

    Raises :class:`ServerRefused` on an error status, :class:`Unreachable` when nothing answered.
    """
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise ServerRefused(exc.code, error_detail(exc)) from None
    except (urllib.error.URLError, OSError) as exc:
        raise Unreachable(getattr(exc, "reason", exc)) from None


def error_detail(exc: urllib.error.HTTPError) -> str:
    """The reason an error answer gives: FastAPI's ``detail``, a pydantic 422's list of refused fields spelled
    out (``field: why; ...``), else the status's own reason."""
    try:
        detail = json.loads(exc.read()).get("detail")
    except (ValueError, AttributeError):
        return str(exc.reason)
    if isinstance(detail, list):
        return "; ".join(f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}" for d in detail)
    return str(detail)
