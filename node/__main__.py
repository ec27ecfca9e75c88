"""``python -m node`` runs the ``fedmarket`` CLI."""

from node.cli import main

main()
