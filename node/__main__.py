"""``python -m node`` runs the ``fedmarket`` CLI."""

from node.cli.root import main

main()
