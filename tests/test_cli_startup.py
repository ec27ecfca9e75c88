"""A command that trains nothing starts without torch: every command module imports only what
its commands need at import time, and the names offered by training options are read on first
use (`fedmarket status` took ~7 s of imports before, ~1.5 s after)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "sklearn", "opacus", "scipy", "matplotlib")

LOAD_EVERY_COMMAND = f"""
import json, sys
from node.cli.root import walk
paths = [" ".join(path) for path, _ in walk()]
print(json.dumps({{"commands": len(paths), "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""


def test_loading_every_command_imports_no_training_library():
    out = subprocess.run(
        [sys.executable, "-c", LOAD_EVERY_COMMAND], capture_output=True, text=True, check=True
    ).stdout
    report = json.loads(out)
    assert report["commands"] > 40  # the whole tree was loaded, not just the root
    assert report["heavy"] == [], report


def test_a_training_option_still_offers_the_librarys_names():
    code = (
        "import sys; from node.cli.root import command_at; "
        "opt = {p.name: p for p in command_at(('node', 'run')).params}['behaviour']; "
        "print(' '.join(opt.type.choices), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    names, loaded = out.stdout.rsplit(" ", 1)
    assert "honest" in names.split() and "sign_flip" in names.split()
    assert loaded.strip() == "True"  # reading the names imported the attacks (and torch)
