"""A child of a :class:`~ragbus.process_pool.ProcessPool`: ``ragbus ARGUMENTS`` that stops
when its supervisor dies.

Usage: ``python -m ragbus.pool_child SUPERVISOR_PID ARGUMENT...``

On Linux it asks the kernel to send it SIGTERM when its parent dies
(``PR_SET_PDEATHSIG``), checks that the parent is still ``SUPERVISOR_PID`` (it may have
died before the request was made), then runs the ``ragbus`` command in this process. A
SIGTERM makes a worker or gateway drain and exit 0, so a supervisor killed with
``kill -9`` loses nothing: its children finish what they hold and stop. This runs before
any thread exists, which ``preexec_fn`` in a supervisor with threads could not promise.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Final

#: ``PR_SET_PDEATHSIG`` from ``<linux/prctl.h>``.
PR_SET_PDEATHSIG: Final = 1


def main() -> None:
    """Tie this process to its supervisor, then run ``ragbus`` with the rest of argv."""
    if len(sys.argv) < 3:
        sys.exit(f"usage: {sys.argv[0]} SUPERVISOR_PID ARGUMENT...")
    supervisor, arguments = int(sys.argv[1]), sys.argv[2:]
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
            sys.exit(f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(ctypes.get_errno())}")
    if os.getppid() != supervisor:
        sys.exit("the supervisor is gone")
    from ragbus.cli import main as ragbus

    sys.argv = ["ragbus", *arguments]
    ragbus()


if __name__ == "__main__":
    main()
