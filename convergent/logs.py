"""Job logging: every pipeline job logs progress to its Snakemake ``log:`` file."""

from __future__ import annotations

import logging
import os
import sys
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
