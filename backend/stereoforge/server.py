"""The job server: ``stereoforge serve --root DIR``, for the Blender add-on and for pipelines.

A small HTTP contract (FastAPI):

    GET  /health              version, the worker's torch, device and GPU, what is loaded, the queue
    GET  /models              models available on the server, by stage (as ``stereoforge models``)
    POST /jobs                {"kind": "convert" | "generate", ...the CLI options..., "output_dir": "shots/sh010"}
    GET  /jobs, /jobs/{id}    state (queued, running, succeeded, failed, cancelled), phase, progress 0..1 within
                              the phase (and done/total: its frames or denoising steps), error, output paths
    POST /jobs/{id}/cancel    stops at the next frame or denoising step; finished frames stay
    POST /release             drops the models the worker keeps loaded, freeing GPU memory

Jobs run one at a time in a worker process: a crash (or an out-of-memory kill) fails that job, and the server
starts a new worker for the next one. The worker keeps models loaded between jobs until ``/release``.

Security: the server binds to loopback unless told otherwise, and refuses another address without a token; with
a token, every request needs ``Authorization: Bearer TOKEN`` (401 without, 403 with a wrong one). Every folder a
job writes (``output_dir``) resolves inside ``--root``: ``..``, absolute paths elsewhere and symlinks that lead
out are refused (422, naming the field), and checked again when the job starts. Input files (source, depth,
first frame) are only read, and must resolve the same way inside ``--root`` or inside a folder the server was
started with as ``--read-root DIR``; relative ones are taken from ``--root``, model folders too (which may also
lie in a ``--models-dir`` folder; anything else is a hub id). Request bodies
are at most ``MAX_BODY_BYTES`` (a larger one is a 413, read no further) and are validated by pydantic: a bad one
is a 422 that names the field. Job views shorten long text fields (a prompt) to ``_SHOWN_CHARS`` characters.
With a token, ``/docs`` and ``/openapi.json`` need it like every other path. Models never run code from their
repository over HTTP unless the server was started with ``--allow-remote-code``.
"""

import contextlib
import dataclasses
import ipaddress
import json
import multiprocessing
import os
import queue
import secrets
import threading
import time
import traceback
import typing
import uuid
from collections import deque
from dataclasses import MISSING, dataclass, field
from typing import Annotated, Literal

from . import __version__
from .errors import InputError
from .shot import ENDED, SHOT_JSON

DEFAULT_PORT = 8765
#: Log lines kept per job.
_LOG_LINES = 100
#: The largest request body taken: a job's options are a few kB, a long prompt included.
MAX_BODY_BYTES = 1 << 20
#: Text fields longer than this are shortened in job views (the job keeps them whole).
_SHOWN_CHARS = 256
#: How often an idle worker process looks whether the server that started it still runs (seconds): a server
#: killed outright (SIGKILL, the out-of-memory killer, a crashed Blender's backend) sends no "stop".
_ORPHAN_CHECK_S = 1.0
#: Job fields naming files that a job reads.
INPUT_FIELDS = ("source", "depth", "image")


def phase_of(stage: str) -> str:
    """The phase the API reports for a pipeline stage name."""
    if stage == "generate":
        return "generating"
    if stage in ("depth model", "source check", "depth range", "ingest"):
        return "depth"
    if stage in ("cloud", "eyes"):
        return "rendering"
    if stage.startswith("inpaint") or "+inpaint" in stage:  # eyes+inpaint+composite: mostly the inpainting
        return "inpainting"
    if stage == "composite":
        return "compositing"
    if stage.startswith("encode"):
        return "encoding"
    return stage


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def confine(root: str, path: str, *also: str) -> str:
    """``path`` (relative to ``root``, or absolute) as a real path strictly inside ``root`` (or one of the
    real folders ``also``).

    Raises:
        ValueError: empty, with a ``..`` component, or resolving (symlinks followed) outside them.
    """
    if not isinstance(path, str) or not path.strip():
        raise ValueError("give a folder relative to the server's root")
    if "\x00" in path:
        raise ValueError("the path holds a NUL character")
    if ".." in path.replace("\\", "/").split("/"):
        raise ValueError(f"'{path}' contains '..'; give a folder inside the server's root")
    real = os.path.realpath(os.path.join(root, path))
    if not any(real != folder and os.path.commonpath([folder, real]) == folder for folder in (root, *also)):
        # (a root of '/' is the add-on's local server, which may read and write anywhere)
        where = f"the server's root '{root}'" + "".join(f" or '{folder}'" for folder in also)
        raise ValueError(f"'{path}' resolves to '{real}', which is not inside {where}; absolute paths and "
                         "symlinks must stay inside it" + ("" if also else " (a server reads other folders "
                                                            "only when started with --read-root DIR)"))
    return real


def confine_job(data: dict, root: str, read_roots: tuple[str, ...]) -> dict:
    """A job's paths checked again where it runs: a symlink may have been swapped since it was accepted."""
    inputs = {key: confine(root, data[key], *read_roots) for key in INPUT_FIELDS if data.get(key)}
    return {**data, **inputs, "output_dir": confine(root, data["output_dir"])}


# -------------------------------------------------------------------------------------------- the worker


def run_job(kind: str, data: dict, progress, cancel, log, ray: str | None = None) -> dict:
    """Run one job of ``kind`` from its flat spec (what POST /jobs validated); its convert part on the Ray
    cluster at ``ray`` when given (:mod:`stereoforge.farm`)."""
    if kind == "generate":
        from .generate import GenerateSpec, generate

        return generate(GenerateSpec.from_dict(data), progress=progress, cancel=cancel, log=log, ray=ray)
    from .spec import ConvertSpec

    spec = ConvertSpec.from_dict(data)
    if ray is not None:
        from .farm import convert as convert_on_ray

        return convert_on_ray(spec, ray, progress=progress, cancel=cancel, log=log)
    from .pipeline import convert

    return convert(spec, progress=progress, cancel=cancel, log=log)


def _device_info() -> dict:
    import torch

    info = {"torch": torch.__version__, "cuda": torch.cuda.is_available(),
            "device": "cuda" if torch.cuda.is_available() else "cpu", "pid": os.getpid()}
    if info["cuda"]:
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1))
    return info


def _worker_main(inbox, outbox, cancel_flag, root: str, read_roots: tuple[str, ...] = (),
                 ray: str | None = None) -> None:
    """The worker process: runs jobs one at a time, keeps models loaded between them; hands the convert part of
    each to the Ray cluster at ``ray`` when given (joined at the first job, kept)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    from .errors import Cancelled
    from .models.loading import loaded, release

    outbox.put(("ready", _device_info()))
    server = multiprocessing.parent_process()
    while True:
        try:
            message = inbox.get(timeout=_ORPHAN_CHECK_S)
        except queue.Empty:
            if server.is_alive():
                continue
            return  # the server was killed (no "stop" came): models and memory are not held on for nobody
        if message[0] == "stop":
            return
        if message[0] == "release":
            outbox.put(("released", release()))
            continue
        _, number, kind, data = message
        last = [0.0, ""]

        def progress(stage: str, done: int, total: int, number=number, last=last) -> None:
            now = time.monotonic()
            # Fine-grained progress is throttled; the first and last of each stage always go out.
            if stage != last[1] or done >= total or now - last[0] > 0.1:
                last[:] = [now, stage]
                outbox.put(("progress", number, stage, done, total))

        def cancel(number=number) -> bool:
            # A killed server can no longer cancel: its job stops as a cancelled one (finished frames kept).
            return cancel_flag.value == number or not server.is_alive()

        try:
            data = confine_job(data, root, read_roots)
            result = run_job(kind, data, progress, cancel, lambda m, number=number: outbox.put(("log", number, m)),
                             ray)
            outbox.put(("succeeded", number, _plain(result), loaded()))
        except Cancelled as exc:
            outbox.put(("cancelled", number, str(exc)))
        except (InputError, ValueError) as exc:
            outbox.put(("failed", number, str(exc), None))
        except Exception as exc:  # a bug or a library failure: fail the job, keep the worker
            outbox.put(("failed", number, f"{type(exc).__name__}: {exc}", traceback.format_exc()))


def _plain(value):
    """JSON-ready copy of a job result (tuples to lists, anything odd to str)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


# ------------------------------------------------------------------------------------------------ the jobs


@dataclass
class Job:
    id: str
    number: int
    kind: str
    spec: dict
    state: str = "queued"
    stage: str | None = None
    phase: str | None = None
    progress: float = 0.0
    #: Frames (or denoising steps) of the stage done so far, and in all.
    done: int = 0
    total: int = 0
    error: str | None = None
    cancel_requested: bool = False
    result: dict | None = None
    log: deque = field(default_factory=lambda: deque(maxlen=_LOG_LINES))
    #: Lines logged in all (``log`` keeps the last ones): a client polling the job tells its new lines by it.
    logged: int = 0
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None

    def view(self) -> dict:
        """The job as the API shows it; long text (a prompt) shortened."""
        shot = self.spec["output_dir"]
        outputs = {"shot_dir": shot, "shot_json": os.path.join(shot, SHOT_JSON), "videos": []}
        if self.result:
            outputs["videos"] = self.result.get("videos", [])
        return {"id": self.id, "kind": self.kind, "state": self.state, "phase": self.phase, "stage": self.stage,
                "progress": self.progress, "error": self.error, "cancel_requested": self.cancel_requested,
                "outputs": outputs, "result": self.result, "log": list(self.log), "created": self.created,
                "started": self.started, "finished": self.finished, "spec": _shortened(self.spec),
                "done": self.done, "total": self.total, "logged": self.logged}

    def add_log(self, line: str) -> None:
        self.log.append(line)
        self.logged += 1


def _shortened(spec: dict) -> dict:
    return {key: f"{value[:_SHOWN_CHARS]}... ({len(value)} characters)"
            if isinstance(value, str) and len(value) > _SHOWN_CHARS else value for key, value in spec.items()}


class JobManager:
    """The queue, and the worker process that runs it; one scheduler thread moves jobs and messages."""

    def __init__(self, root: str, read_roots: tuple[str, ...] = (), ray: str | None = None):
        self.root = root
        self.read_roots = read_roots
        self.ray = ray
        self.jobs: dict[str, Job] = {}
        self.queue: deque[str] = deque()
        self.lock = threading.Lock()
        self.context = multiprocessing.get_context("spawn")
        # No lock: a worker killed while holding it would block every later cancel. An aligned 8-byte store is
        # atomic, and only the server writes it.
        self.cancel_flag = self.context.Value("q", 0, lock=False)
        self.worker = None
        self.worker_info: dict | None = None
        self.loaded: dict = {}
        self.running: Job | None = None
        self.counter = 0
        self.release_wanted = False
        self.released = threading.Event()
        self.released_stages: list[str] = []
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> None:
        self._spawn()
        self.thread = threading.Thread(target=self._loop, name="stereoforge-jobs", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.running is not None:
            self.cancel_flag.value = self.running.number
        if self.thread is not None:
            self.thread.join(timeout=5)
        if self.worker is not None:
            with contextlib.suppress(Exception):
                self.inbox.put(("stop",))
            self.worker.join(timeout=10)
            if self.worker.is_alive():
                self.worker.terminate()
                self.worker.join(timeout=5)

    def _spawn(self) -> None:
        self.inbox = self.context.Queue()
        self.outbox = self.context.Queue()
        self.worker_info = None
        self.loaded = {}
        self.worker = self.context.Process(target=_worker_main, name="stereoforge-worker", daemon=True,
                                           args=(self.inbox, self.outbox, self.cancel_flag, self.root,
                                                 self.read_roots, self.ray))
        self.worker.start()

    # -- requests

    def submit(self, kind: str, spec: dict) -> Job:
        with self.lock:
            self.counter += 1
            job = Job(uuid.uuid4().hex[:16], self.counter, kind, spec)
            self.jobs[job.id] = job
            self.queue.append(job.id)
        return job

    def cancel(self, job: Job) -> None:
        with self.lock:
            if job.state == "queued":
                self.queue.remove(job.id)
                job.state, job.finished = "cancelled", time.time()
                job.error = "cancelled before it started"
            elif job.state == "running":
                job.cancel_requested = True
                self.cancel_flag.value = job.number

    def release(self, wait: float) -> dict:
        with self.lock:
            busy = self.running is not None
            self.released.clear()
            self.release_wanted = True
        if busy:
            return {"released": False, "pending": True,
                    "message": "a job is running; its models are released when it ends"}
        done = self.released.wait(wait)
        return {"released": done, "pending": not done, "stages": self.released_stages if done else []}

    # -- the scheduler thread

    def _loop(self) -> None:
        while not self.stopping.is_set():
            if not self.worker.is_alive():
                self._worker_died()
            with self.lock:
                if self.running is None and self.release_wanted:
                    self.release_wanted = False
                    self.inbox.put(("release",))
                elif self.running is None and self.queue:
                    job = self.jobs[self.queue.popleft()]
                    job.state, job.started, job.phase = "running", time.time(), "starting"
                    self.running = job
                    self.inbox.put(("job", job.number, job.kind, job.spec))
            try:
                message = self.outbox.get(timeout=0.1)
            except queue.Empty:
                continue
            except (EOFError, OSError):
                continue
            self._handle(message)

    def _worker_died(self) -> None:
        code = self.worker.exitcode
        with self.lock:
            job = self.running
            if job is not None:
                job.state, job.finished = "failed", time.time()
                job.error = (f"the worker process stopped (exit code {code}) while running this job: it crashed "
                             "or ran out of memory; the server started a new worker for the next job")
                self.running = None
        self._spawn()

    def _handle(self, message: tuple) -> None:
        kind = message[0]
        with self.lock:
            if kind == "ready":
                self.worker_info = message[1]
                return
            if kind == "released":
                self.released_stages = message[1]
                self.loaded = {}
                self.released.set()
                return
            job = next((j for j in self.jobs.values() if j.number == message[1]), None)
            if job is None:
                return
            if kind == "progress":
                _, _, stage, done, total = message
                job.stage, job.phase = stage, phase_of(stage)
                job.progress = min(1.0, done / total) if total else 0.0
                job.done, job.total = done, total
            elif kind == "log":
                job.add_log(message[2])
            elif kind in ENDED:
                job.state, job.finished = kind, time.time()
                if kind == "succeeded":
                    job.result = message[2]
                    self.loaded = message[3] or {}
                    job.progress = 1.0
                else:
                    job.error = message[2]
                    if kind == "failed" and len(message) > 3 and message[3]:
                        job.add_log(message[3])
                if self.running is job:
                    self.running = None

    def health(self) -> dict:
        with self.lock:
            return {"worker": self.worker_info or {"state": "starting"}, "loaded": self.loaded,
                    "running": self.running.id if self.running else None, "queued": len(self.queue)}


# ------------------------------------------------------------------------------------------- the requests


def _dataclass_fields(cls, skip: tuple[str, ...] = (), defaults: dict | None = None) -> dict:
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if f.name in skip or f.name == "options":
            continue
        default = (defaults or {}).get(f.name, f.default)
        out[f.name] = (hints[f.name], ... if default is MISSING else default)
    return out


def job_models(root: str, allow_remote_code: bool = False, read_roots: tuple[str, ...] = (),
               model_dirs: tuple[str, ...] = ()):
    """The pydantic models of POST /jobs bodies, with paths checked against ``root``: ``(Convert, Generate)``.
    A model is a hub id or a folder; a folder (absolute, with ``..``, or one that exists under ``root``) must
    resolve inside ``root``, a ``read_roots`` folder or a ``model_dirs`` folder (``serve --models-dir``)."""
    from pydantic import ConfigDict, create_model, field_validator, model_validator

    from .generate import DEFAULT_DEPTH_MODEL, SET_BY_GENERATE, GenerateSpec
    from .spec import ConvertSpec

    def output_dir(cls, value: str) -> str:
        return confine(root, value)

    def input_path(cls, value):
        return None if value is None else confine(root, value, *read_roots)

    def model_path(cls, value):
        if value is None:
            return value
        folder = os.path.isabs(value) or ".." in value.replace("\\", "/").split("/") \
            or os.path.isdir(os.path.join(root, value))
        return confine(root, value, *read_roots, *model_dirs) if folder else value  # else a hub id

    def remote_code(cls, value: bool) -> bool:
        if value and not allow_remote_code:
            raise ValueError("this server does not let models run code from their repositories; start it "
                             "with --allow-remote-code to allow it")
        return value

    def spec_check(kind: str):
        def check(self):
            data = self.model_dump(exclude={"kind"})
            try:
                if kind == "generate":
                    GenerateSpec.from_dict(data).check()
                else:
                    ConvertSpec.from_dict(data).check()
            except InputError as exc:
                raise ValueError(str(exc)) from None
            return self
        return check

    validators = {
        "v_output_dir": field_validator("output_dir")(output_dir),
        "v_inputs": field_validator(*INPUT_FIELDS, check_fields=False)(input_path),
        "v_models": field_validator("depth_model", "inpaint_model", "video_model", check_fields=False)(model_path),
        "v_remote_code": field_validator("trust_remote_code")(remote_code),
    }
    config = ConfigDict(extra="forbid")
    convert = create_model(
        "ConvertJob", __config__=config,
        __validators__={**validators, "v_spec": model_validator(mode="after")(spec_check("convert"))},
        kind=(Literal["convert"], ...), **_dataclass_fields(ConvertSpec))
    generate = create_model(
        "GenerateJob", __config__=config,
        __validators__={**validators, "v_spec": model_validator(mode="after")(spec_check("generate"))},
        kind=(Literal["generate"], ...), **_dataclass_fields(GenerateSpec),
        **_dataclass_fields(ConvertSpec, skip=SET_BY_GENERATE, defaults={"depth_model": DEFAULT_DEPTH_MODEL}))
    return convert, generate


def create_app(root: str, token: str | None = None, model_dirs: tuple[str, ...] = (),
               allow_remote_code: bool = False, read_roots: tuple[str, ...] = (), ray: str | None = None):
    """The FastAPI app of a server writing under ``root`` and reading inputs there or under ``read_roots``; the
    worker starts with the app (lifespan) and hands convert work to the Ray cluster at ``ray`` when given."""
    from fastapi import Body, Depends, FastAPI, HTTPException
    from fastapi.encoders import jsonable_encoder
    from fastapi.exceptions import RequestValidationError
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import JSONResponse
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

    root = os.path.realpath(root)
    read_roots = tuple(os.path.realpath(folder) for folder in read_roots)
    manager = JobManager(root, read_roots, ray)
    model_dirs = tuple(os.path.realpath(folder) for folder in model_dirs)
    convert_job, generate_job = job_models(root, allow_remote_code, read_roots, model_dirs)
    bearer = HTTPBearer(auto_error=False)

    def authorise(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if token is None:
            return
        if credentials is None:
            raise HTTPException(401, "this server needs a token: send 'Authorization: Bearer TOKEN'",
                                headers={"WWW-Authenticate": "Bearer"})
        if not secrets.compare_digest(credentials.credentials.encode(), token.encode()):
            raise HTTPException(403, "wrong token")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        manager.start()
        try:
            yield
        finally:
            manager.stop()

    # The documentation is served by routes of our own, so that the token guards it like every other path.
    app = FastAPI(title="StereoForge", version=__version__, lifespan=lifespan, dependencies=[Depends(authorise)],
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    app.state.manager = manager

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError):
        # pydantic's errors carry the input they failed on, which may be the whole body: not echoed.
        errors = [{key: value for key, value in error.items() if key != "input"} for error in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": jsonable_encoder(errors)})

    @app.get("/openapi.json", include_in_schema=False)
    def openapi() -> dict:
        return app.openapi()

    @app.get("/docs", include_in_schema=False)
    def docs():
        return get_swagger_ui_html(openapi_url="/openapi.json", title="StereoForge API")
    JobBody = Annotated[convert_job | generate_job, Body(discriminator="kind")]

    def find(job_id: str) -> Job:
        job = manager.jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job '{job_id}' on this server")
        return job

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "version": __version__, "root": root, **manager.health()}

    @app.get("/models")
    def models() -> dict:
        from .models.registry import by_stage, scan

        return by_stage(scan([os.path.join(root, "models"), *model_dirs]))

    @app.post("/jobs", status_code=201)
    def submit(body: JobBody) -> dict:
        return manager.submit(body.kind, body.model_dump(exclude={"kind"})).view()

    @app.get("/jobs")
    def jobs() -> list[dict]:
        return [job.view() for job in manager.jobs.values()]

    @app.get("/jobs/{job_id}")
    def job(job_id: str) -> dict:
        return find(job_id).view()

    @app.post("/jobs/{job_id}/cancel")
    def cancel(job_id: str) -> dict:
        job = find(job_id)
        if job.state in ENDED:
            raise HTTPException(409, f"job '{job_id}' has already {job.state}")
        manager.cancel(job)
        return job.view()

    @app.post("/release")
    def release() -> dict:
        return manager.release(wait=60.0)

    return app


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is answered 413 without being read further."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.limit:
                return await self._refuse(send)
            return await self.app(scope, receive, send)
        # No length given (chunked): the body is read here, up to the limit, and handed on whole.
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, receive, send)
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.limit:
                return await self._refuse(send)
        pending = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay():  # the body once, then what the client sends next (its disconnect)
            return pending.pop() if pending else await receive()

        return await self.app(scope, replay, send)

    async def _refuse(self, send) -> None:
        detail = (f"the request body is larger than this server takes ({self.limit} bytes); a job's options "
                  "are a few kB: send paths to files, not their contents")
        payload = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})
