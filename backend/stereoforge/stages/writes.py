"""Files written on a small pool of threads while the stage goes on with the next frame: PNG encoding (OpenCV)
and EXR writing (OpenEXR) release the GIL, so on two cores a frame's writes overlap the next frame's work. The
bytes are those of writing in line; each file still appears complete or not at all (atomic renames)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

#: Threads that write in a process that may use the machine's cores (a job without
#: :attr:`~stereoforge.stages.Job.threads`); a stage waits when this many writes per thread are pending, so memory
#: stays flat.
WRITERS = 2
_PENDING_PER_WRITER = 4


class Writes:
    """A context manager that runs ``submit(fn, *args)`` on ``writers`` threads (0: each write in line, on the
    stage's own thread, as a job of one thread does: :attr:`stereoforge.stages.Job.writers`); leaving it waits for
    every write (a stopped run keeps the frames it finished) and raises the first one's error (as writing in
    line would have)."""

    def __init__(self, writers: int) -> None:
        self._writers = writers
        self._pool = ThreadPoolExecutor(writers, thread_name_prefix="stereoforge-write") if writers else None
        self._pending: list[Future] = []

    def submit(self, fn: Callable[..., object], *args) -> None:
        if self._pool is None:
            fn(*args)
            return
        self._pending.append(self._pool.submit(fn, *args))
        if len(self._pending) > self._writers * _PENDING_PER_WRITER:
            self._pending.pop(0).result()

    def wait(self) -> None:
        """Wait for every write submitted so far; raises the first one's error."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def __enter__(self) -> Writes:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        try:
            if kind is None:
                self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
