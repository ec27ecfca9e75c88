"""Where the side-by-side benchmarks find Flower.

flwr 1.41 pins starlette, fastapi and uvicorn below this project's pins, so it cannot share
``.venv``: ``scripts/bootstrap --bench`` installs it into ``.venv-flower``, whose interpreter also
sees ``.venv``'s packages (torch, this project) after Flower's own. The benchmarks run their
Flower side with that interpreter.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

FLOWER_PYTHON = Path(__file__).resolve().parent.parent / ".venv-flower" / "bin" / "python"


def flower_python() -> str:
    """An interpreter that can import ``flwr``: this one, or ``.venv-flower``'s."""
    if importlib.util.find_spec("flwr") is not None:
        return sys.executable
    if FLOWER_PYTHON.exists():
        return str(FLOWER_PYTHON)
    raise SystemExit("Flower is not installed: run scripts/bootstrap --bench (or pass --no-flower)")


def run_under_flower_python() -> None:
    """Re-run this script with :func:`flower_python` when this interpreter lacks ``flwr``."""
    python = flower_python()
    if python != sys.executable:
        os.execv(python, [python, *sys.argv])
