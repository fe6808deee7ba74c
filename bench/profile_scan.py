"""cProfile of one library scan (the start-up load, which runs in a worker thread).

python bench/profile_scan.py [--files 10000] [--top 30]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

from library_scale import write_library

from flowtaskd.daemon.intake.library import Library


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--top", type=int, default=30)
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="ftd-scan-", dir="/tmp"))
    try:
        write_library(root, args.files)
        Library([root]).scan()  # warm the page cache and the imports
        lib = Library([root])
        t0 = time.process_time()
        profile = cProfile.Profile()
        profile.enable()
        changes = lib.scan()
        profile.disable()
        took = time.process_time() - t0
    finally:
        shutil.rmtree(root, ignore_errors=True)
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(args.top)
    print(f"{len(changes)} changes, {took:.2f} s CPU under cProfile")
    print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
