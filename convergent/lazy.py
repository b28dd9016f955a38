"""Deferred imports for the modules every job imports at start-up.

Each Snakemake job is a fresh Python process, so a library imported at the top of a
module shared by all jobs (pandas: ≈ 0.6 s) is paid by every job, also by those that
never use it (training, extraction). ``pd = LazyModule("pandas")`` costs nothing until
``pd.<attribute>`` is first read.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands in for module ``name`` and imports it when one of its attributes is first read.

    Nothing is put in ``sys.modules`` before that. Use it with ``TYPE_CHECKING``, so type
    checkers see the real module::

        if TYPE_CHECKING:
            import pandas as pd
        else:
            pd = LazyModule("pandas")
    """

    def __init__(self, name: str) -> None:
        self._name = name

    def _load(self) -> ModuleType:
        return importlib.import_module(self._name)   # a dictionary look-up once imported

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._load(), attr)

    def __repr__(self) -> str:
        return f"<LazyModule {self._name!r}>"
