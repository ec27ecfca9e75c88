"""Build hook: the wheel ships the contracts' ABIs and bytecode (marketplace/chain/_build/).

Everything else about the package is in pyproject.toml. Before the Python files are collected,
``build_py`` runs ``python -m marketplace.chain.build`` (solc-js through py-solc-x, offline) unless
the artifacts are already built, so an installed wheel can deploy without the Solidity sources.
Build with the project's environment, e.g. ``pip wheel --no-build-isolation --no-deps .``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
ARTIFACTS = ROOT / "marketplace" / "chain" / "_build" / "contracts.json"


class BuildWithContracts(build_py):
    """``build_py`` that first builds the packaged contract artifacts."""

    def run(self) -> None:
        # An editable install reads the source tree (scripts/bootstrap builds the artifacts
        # there, after the npm packages the compiler needs are installed).
        if not getattr(self, "editable_mode", False) and not ARTIFACTS.exists():
            subprocess.run(
                [sys.executable, "-m", "marketplace.chain.build", str(ARTIFACTS)],
                cwd=ROOT,
                check=True,
            )
        super().run()


setup(cmdclass={"build_py": BuildWithContracts})
