"""Run a program with the cupy API stand-in installed as `cupy` (no GPU needed):

    python tests/cupy_standin -m tinygrad_lm train --device cuda ...
    python tests/cupy_standin path/to/script.py args...
    python tests/cupy_standin -c "code"

With CUPY_STANDIN_COUNTS=path the stand-in's counters (host syncs, copies, launches) are
written there as JSON when the program ends. Everything printed about speed is meaningless
under the stand-in: it is numpy on the CPU.
"""
import atexit
import json
import os
import runpy
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import cupy_standin  # noqa: E402

if len(sys.argv) < 2:
    sys.exit(__doc__)
cupy_standin.install()
if os.environ.get("CUPY_STANDIN_COUNTS"):
    atexit.register(lambda: open(os.environ["CUPY_STANDIN_COUNTS"], "w").write(
        json.dumps(cupy_standin.counters.snapshot())))
print(f"[{cupy_standin.BANNER}]", file=sys.stderr)
if sys.argv[1] == "-c":
    code = sys.argv[2]
    sys.argv = ["-c"] + sys.argv[3:]
    exec(compile(code, "<string>", "exec"), {"__name__": "__main__"})
elif sys.argv[1] == "-m":
    mod = sys.argv[2]
    sys.argv = [mod] + sys.argv[3:]
    runpy.run_module(mod, run_name="__main__", alter_sys=True)
else:
    path = sys.argv[1]
    sys.argv = sys.argv[1:]
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    runpy.run_path(path, run_name="__main__")
