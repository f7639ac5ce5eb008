"""A background sender with a bounded queue: what a pass hands over never waits.

Terminal notices, notice files and webhook alerts all leave ds01d through one of these. A
pass only puts a job in the queue (or, when it is full, drops it and counts it: a stuck
webhook or a user's stalled file may cost their own messages, never a pass). One thread
works the queue in order; a failing job is logged and the next one runs.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger("ds01d")
Job = Callable[[], None]


class Outbox:
    def __init__(self, name: str, size: int = 256) -> None:
        self.name = name
        self.jobs: queue.Queue[Job | None] = queue.Queue(maxsize=size)
        self.dropped = 0
        self.failed = 0
        self.done = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def put(self, job: Job) -> bool:
        """Queue ``job``; ``False`` (and counted) when the queue is full."""
        self._start()
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning("%s: queue full, %d dropped so far", self.name, self.dropped)
            return False
        return True

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every queued job has run (tests, and a clean stop)."""
        done = threading.Event()

        def mark() -> None:
            done.set()

        try:
            self.jobs.put(mark, timeout=timeout)
        except queue.Full:
            return False
        self._start()
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Run what is queued (for at most ``timeout``), then stop the thread."""
        if self._thread is None:
            return
        try:
            self.jobs.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
                self._thread.start()

    def _work(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            try:
                job()
                self.done += 1
            except Exception as e:  # one failing delivery never stops the others
                self.failed += 1
                log.warning("%s: %s: %s", self.name, type(e).__name__, e)
