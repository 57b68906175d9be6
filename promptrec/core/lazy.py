"""Heavy third-party modules imported on first use, so `promptrec --help` and `--dry-run` stay fast.

`torch = LazyModule("torch")` at the top of a module reads like an import and is one: the module is
imported the first time an attribute is read. It is a plain proxy, never placed in `sys.modules`
(importlib's LazyLoader is, and torch's import machinery trips over a half-loaded module there).
Only `promptrec.lm` uses it for the torch stack; annotations stay strings (`from __future__ import
annotations`), so they never trigger the import.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class LazyModule:
    """A module imported the first time one of its attributes is read."""

    def __init__(self, name: str):
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attribute: str):
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attribute)

    def __repr__(self) -> str:
        state = "loaded" if self._module is not None else "not loaded yet"
        return f"<lazy module {self._name!r}, {state}>"
