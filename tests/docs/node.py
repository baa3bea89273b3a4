"""Node.js and the npm packages the JavaScript examples import, installed once.

The packages come from the npm registry with the machine's ``npm``, into a folder of the
temporary directory named after them, so a second run finds them there; a lock keeps
two test runs from installing into it at once.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import tempfile
from pathlib import Path

#: What the JavaScript examples import, as ``npm install`` takes it.
PACKAGES = ("amqplib@2",)


def node_modules() -> Path:
    """The ``node_modules`` folder holding :data:`PACKAGES` (installed if missing).

    Raises ``FileNotFoundError`` when ``node`` or ``npm`` is not installed, and
    ``RuntimeError`` when ``npm install`` fails.
    """
    for program in ("node", "npm"):
        if shutil.which(program) is None:
            raise FileNotFoundError(f"{program} is not installed")
    folder = Path(tempfile.gettempdir()) / "ragbus-docs-npm" / "+".join(PACKAGES)
    folder.mkdir(parents=True, exist_ok=True)
    done = folder / "installed"
    with (folder / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            result = subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(folder), *PACKAGES],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            if result.returncode != 0:
                raise RuntimeError(f"npm install {' '.join(PACKAGES)} failed:\n{result.stderr}")
            done.write_text("\n".join(PACKAGES))
    return folder / "node_modules"
