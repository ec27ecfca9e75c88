"""The ``fedmarket`` command line (click): :mod:`.root` is the root group and names one module
per command group (``*_cli.py``), each imported when its command runs; :mod:`.output` holds what
they share (console, ``--json``, tables, option decorators, parameter types); :mod:`.context`
resolves the node's settings."""

from node.cli.root import cli, main

__all__ = ["cli", "main"]
