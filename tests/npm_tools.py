"""The npm tools the schema tests run (yaml-language-server, ajv-cli, taplo), in ``.tools/``.

One list for ``.ci/run`` (``python tests/npm_tools.py`` installs them) and for the tests
(:func:`npm_tool` installs them on first use). Only a machine without ``npm`` skips those
tests; a failed install is an error, not a skip.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PREFIX = REPO / ".tools"
PACKAGES = ("yaml-language-server@1", "ajv-cli@5", "@taplo/cli@0.7")
NO_NPM = "npm is not installed (Debian: apt-get install npm); it brings " + ", ".join(PACKAGES)


def _bin(name: str) -> Path:
    return PREFIX / "node_modules" / ".bin" / name


def install(names: tuple[str, ...] = ("yaml-language-server", "ajv", "taplo")) -> str | None:
    """Install the tools into ``.tools/`` unless they are there; None when done, else why
    not (no npm). Raises :class:`RuntimeError` with npm's output when npm fails."""
    if all(_bin(name).exists() for name in names):
        return None
    npm = shutil.which("npm")
    if npm is None:
        return NO_NPM
    PREFIX.mkdir(exist_ok=True)
    with (PREFIX / ".install.lock").open("w") as lock:  # parallel sessions install once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if all(_bin(name).exists() for name in names):
            return None
        argv = [npm, "install", "--prefix", str(PREFIX), "--no-audit", "--no-fund", "--silent"]
        run = subprocess.run(
            [*argv, *PACKAGES], capture_output=True, text=True, timeout=600, check=False
        )
    if run.returncode != 0 or not all(_bin(name).exists() for name in names):
        raise RuntimeError(f"npm install {' '.join(PACKAGES)} failed:\n{run.stdout}{run.stderr}")
    return None


def npm_tool(name: str) -> Path | str:
    """The path of the tool ``name`` (installing the tools if needed), or why there is none."""
    why = install((name,))
    return why if why is not None else _bin(name)


if __name__ == "__main__":  # .ci/run
    try:
        reason = install()
    except RuntimeError as error:
        sys.exit(str(error))
    print(f"npm tools: {reason or 'in ' + str(PREFIX)}")
