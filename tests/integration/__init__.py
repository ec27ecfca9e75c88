"""Multi-process integration tests: every peer a separate ``fedmarket`` process."""
