"""Job logging: every pipeline job logs progress to its Snakemake ``log:`` file."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

LOGGER_NAME = "convergent"


def setup_job_logging(log_path: str | os.PathLike | None) -> logging.Logger:
    """Send the package's log records (and uncaught tracebacks) to ``log_path`` and stderr."""
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
