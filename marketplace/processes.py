"""Stopping the local services the project starts (Anvil, the Hardhat node, Kubo daemons).

Each is started in its own process group (``start_new_session=True``), so stopping the group
also stops the children a launcher such as ``npx`` leaves behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


def stop_process_group(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM the process's group and wait; SIGKILL it if it lingers past ``timeout``."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)
