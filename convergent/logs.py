"""Job logging: every pipeline job logs progress to its Snakemake ``log:`` file."""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

LOGGER_NAME = "convergent"

#: the log line a job ends with: this prefix, then its phases as JSON (see :class:`JobClock`)
PHASES_PREFIX = "job phases (s): "

#: the phases of a job, in order. ``startup``: from the process's creation to the first line
#: of the job's script (interpreter, Snakemake's script preamble, the script's own imports);
#: ``imports``: libraries a job loads where it needs them; ``data``: reading the dataset;
#: ``model``: building networks, loading checkpoints, opening stores; ``compute``: the
#: work itself (training, a forward pass, moments, measures), the useful part; ``write``:
#: writing outputs, digests, figures
PHASES = ("startup", "imports", "data", "model", "compute", "write")


def setup_job_logging(log_path: str | os.PathLike | None) -> logging.Logger:
    """Send the package's log records (and uncaught tracebacks) to ``log_path`` and stderr.

    Also starts the job's :class:`JobClock` (its ``startup`` phase is the process's age now)
    and logs the clock's phases when the process exits."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.INFO)
    logger.handlers.clear()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path is not None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    for handler in handlers:
        handler.setFormatter(fmt)
        logger.addHandler(handler)

    def excepthook(exc_type, exc, tb):
        logger.error("job failed", exc_info=(exc_type, exc, tb))

    sys.excepthook = excepthook
    start_job_clock()
    atexit.register(log_phases)   # a job that fails; finish_job logs them on success and skips atexit
    return logger


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


def progress(total: int, what: str, every_s: float = 10.0,
             log: logging.Logger | None = None) -> Callable[[int], None]:
    """A callback for a loop of ``total`` steps: call it with the number of steps done.

    It logs ``what: done/total (pct) after t s`` at the first and the last step and at most
    every ``every_s`` seconds in between, so a long job shows where it is in its log without
    flooding the log of a short one.
    """
    log = log or get_logger()
    start = time.perf_counter()
    last = [-float("inf")]

    def tick(done: int) -> None:
        now = time.perf_counter()
        if done in (1, total) or now - last[0] >= every_s:
            last[0] = now
            pct = f" ({100 * done / total:.0f} %)" if total else ""
            log.info("%s: %d/%d%s after %.1f s", what, done, total, pct, now - start)

    return tick


def finish_job() -> None:
    """End a job's process after it succeeded: log its phases, flush and close every log handler
    and the standard streams, then leave without the interpreter's teardown (``os._exit(0)``).

    The last line of every job script. With torch loaded, the teardown (finalising thousands of
    modules and objects) takes 0.6-1.2 s per job on this project's 2-core machine and produces
    nothing: by then every output is written, closed and renamed into place. A job that fails
    never gets here, so its exception, traceback and exit status are Python's own."""
    logger = logging.getLogger(LOGGER_NAME)
    log_phases()
    for handler in list(logger.handlers):
        handler.flush()
        handler.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def log_phases() -> None:
    """Log the job clock's phases as the line :func:`parse_phases` reads back."""
    get_logger().info("%s%s", PHASES_PREFIX, json.dumps(job_clock().phases()))


def process_age() -> float:
    """Seconds since this process was created (the OS's record, so interpreter start-up and
    every import before this call count).

    On Linux: the boot-time clock now minus the process's start in clock ticks since boot
    (``/proc/self/stat``), both exact to 10 ms. psutil's ``create_time()`` adds that start to
    the boot time of ``/proc/stat``, which is whole seconds, so its age is up to 1 s too long
    (0.97 s on the machine this was measured on); it is only the fallback elsewhere."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])   # field 22, starttime
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        import psutil   # a Snakemake dependency

        return max(0.0, time.time() - psutil.Process().create_time())


class JobClock:
    """Where one job's wall time goes: :data:`PHASES` in seconds.

    ``lap(phase)`` charges the time since the previous lap to ``phase``; a phase may be
    charged several times (a job that loads two checkpoints between two computations).
    """

    def __init__(self, startup_s: float = 0.0) -> None:
        self._seconds: dict[str, float] = {"startup": float(startup_s)}
        self._last = time.perf_counter()

    def lap(self, phase: str) -> float:
        """Charge the time since the previous lap (or the clock's start) to ``phase``; returns it."""
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; allowed: {', '.join(PHASES)}")
        now = time.perf_counter()
        spent, self._last = now - self._last, now
        self._seconds[phase] = self._seconds.get(phase, 0.0) + spent
        return spent

    def phases(self) -> dict[str, float]:
        """Seconds per phase so far, in :data:`PHASES` order, rounded to ms; plus ``other``:
        the time since the last lap (set-up of the clock's own caller, exit)."""
        out = {p: round(self._seconds[p], 3) for p in PHASES if p in self._seconds}
        out["other"] = round(time.perf_counter() - self._last, 3)
        return out


_CLOCK: JobClock | None = None


def start_job_clock() -> JobClock:
    """Start (or restart) this process's job clock, its ``startup`` phase the process's age."""
    global _CLOCK
    _CLOCK = JobClock(process_age())
    return _CLOCK


def job_clock() -> JobClock:
    """This process's job clock (started on first use when no script started it, e.g. in tests)."""
    global _CLOCK
    if _CLOCK is None:
        _CLOCK = JobClock()
    return _CLOCK


def lap(phase: str) -> float:
    """``job_clock().lap(phase)``: charge the time since the previous lap to ``phase``."""
    return job_clock().lap(phase)


def parse_phases(log_text: str) -> Mapping[str, float] | None:
    """The phases a job logged (its last ``job phases`` line), or None if it logged none."""
    found = None
    for line in log_text.splitlines():
        at = line.find(PHASES_PREFIX)
        if at >= 0:
            found = json.loads(line[at + len(PHASES_PREFIX):])
    return found
