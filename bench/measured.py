"""Run a Python program in this very process, then write its peak RSS (VmHWM, KiB) to a file.

    python bench/measured.py HWM_FILE -m MODULE ARGS... | -c CODE ARGS... | SCRIPT ARGS...

Why not wait4's ru_maxrss: Linux carries it over exec from the parent (with vfork, which
subprocess uses, the child's pre-exec memory *is* the parent's), so a child of a big harness
process would report the harness's peak. VmHWM belongs to the process's own address space, which
exec replaces: it measures this program alone. Written from an atexit hook registered first (so it
runs last); a program killed by a signal writes nothing and the harness falls back to ru_maxrss.
"""

from __future__ import annotations

import atexit
import os
import runpy
import sys


def _write_hwm(path: str) -> None:
    with open("/proc/self/status") as f:
        kib = next((line.split()[1] for line in f if line.startswith("VmHWM:")), None)
    if kib is not None:
        with open(path, "w") as out:
            out.write(kib)


def main() -> None:
    path, *args = sys.argv[1:]
    atexit.register(_write_hwm, path)
    if args[0] == "-m":
        sys.argv = [args[1], *args[2:]]
        sys.path[0] = os.getcwd()  # as `python -m` does
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    elif args[0] == "-c":
        sys.argv = ["-c", *args[2:]]
        sys.path[0] = ""
        exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    else:
        sys.argv = args
        sys.path[0] = os.path.dirname(os.path.abspath(args[0]))
        runpy.run_path(args[0], run_name="__main__")


if __name__ == "__main__":
    main()
