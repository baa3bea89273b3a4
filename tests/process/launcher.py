"""Run a command that dies with the test process that started it.

Usage: ``python -S launcher.py PARENT_PID COMMAND [ARGUMENT...]``

On Linux it asks the kernel to send SIGTERM to this process when its parent dies
(``PR_SET_PDEATHSIG``), makes sure the parent is still ``PARENT_PID`` (it may have died
before the request was made), and then replaces itself with ``COMMAND`` (same pid; the
setting survives ``exec``). So no worker outlives a test run that was killed.

Why a separate program: ``subprocess.Popen(preexec_fn=...)`` runs Python code between
``fork`` and ``exec``, which can deadlock in a process with threads (Python's
documentation warns against it), and a test process has threads (the LM stand-in,
uvicorn). This program starts with one thread.

The kernel signals on the death of the *thread* that started the child: start
processes from the test's main thread (its event loop), not from a worker thread.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

#: ``PR_SET_PDEATHSIG`` from ``<linux/prctl.h>``.
PR_SET_PDEATHSIG = 1


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(f"usage: {sys.argv[0]} PARENT_PID COMMAND [ARGUMENT...]")
    parent, command = int(sys.argv[1]), sys.argv[2:]
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
            error = ctypes.get_errno()
            sys.exit(f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(error)}")
        if os.getppid() != parent:
            sys.exit("the test process is gone")
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
