"""Run every reliability case and write docs/reliability.md from what each one gets.

    python benchmarks/reliability_table.py            # all cases (about 30 s on 2 cores)
    python benchmarks/reliability_table.py --check    # run them, compare with the file, write nothing

The cases are tests/reliability_cases.py (CASES): the fault suite in tests/test_fault_*.py
runs the same cases, asserts each one's expectations and that this file's row matches.
A case that cannot run on this machine (the full-disk case needs a private mount namespace)
is shown as skipped. Exit status 1 when a case does not get what it expects.
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import reliability_cases as rc  # noqa: E402

INTRO = """# Reliability: every bad input and fault, tried

Each row below is a case of `tests/reliability_cases.py`, run by
`python benchmarks/reliability_table.py`, which wrote this file; the fault suite
(`tests/test_fault_*.py`) runs the same cases and fails when a case no longer gets what
this table shows. Columns: the case's id, what was tried, the exit code, the message (the
one line on stderr; for a command that succeeds, what it printed about what it did), and
what happened on disk. **unchanged** means every file and folder under the case's folder
(the run, its data, the checkpoint) has exactly the bytes it had before: a refused command
writes nothing, creates no folder and leaves no temporary file. In messages, `<dir>` is the
case's folder, `<pid>`/`<holder>` a process id, `<available>` this machine's free memory,
`<n>` a step that depends on timing and `<x>` a number that depends on the machine's
floating-point rounding.

The rules every case follows:

* A bad flag, file or checkpoint gets **one line** naming the flag and its range, the file
  (and tensor), or the value at fault, **exit status 2**, and nothing on disk changes.
  Every numeric flag of every subcommand has a range (`tinygrad_lm/ranges.py`, shown by
  `--help`), checked before anything is read (section 9).
* What a configuration needs in memory (parameters, gradients, AdamW moments, activations;
  `tinygrad_lm/resources.py`) is estimated before anything is allocated, and a
  configuration that cannot fit is refused naming the value most to blame (section 5).
* Files are opened, then checked on the open descriptor: a FIFO, a device or a directory is
  refused before a byte is read, and a file larger than its reader allows (or than memory)
  is refused before it is read (section 4).
* A checkpoint is checked whole before a model is built from it (section 6): the
  `safetensors` package validates headers and offsets, tinygrad_lm the rest. Its BPE
  split pattern is a name from a fixed table, never a regex from the file (section 7).
* A training run holds an exclusive lock on `<out-dir>/train.lock` (removed when it ends;
  the kernel drops it when the process dies, even by kill -9): a second run into the same
  folder fails at once naming the holder's pid (section 3).
* `--resume` continues the same run: its whole configuration and the same text (checked by
  SHA-256); only `--max-iters`, `--eval-interval`, `--eval-iters`, `--sample-tokens`,
  `--device` and `--grad-accum-steps` (and the number of processes) may change, each change
  printed; any other flag that differs is refused (section 2).
* A non-finite loss or gradient norm never reaches the weights (the optimizer skips the
  update) and stops training before anything more is evaluated or saved; the last good
  checkpoint stays, and the message names the step, what went non-finite and the plausible
  flags; a checkpoint holding NaN or inf is never written nor loaded (section 1).
* Every file is written to an exclusively created temporary name beside it and renamed
  into place, the checkpoint folder too; a failed save (a full disk) removes its partial
  folder and keeps the previous checkpoint; kill -9 at any moment leaves a loadable
  checkpoint (section 8). Ctrl-C (exit 130) and SIGTERM (exit 143) save a checkpoint of the
  last finished step first (section 11).
* Fine-tuning (`train --init-from DIR`, JSONL prompt/completion examples) and preference
  optimization (`dpo`) read a checkpoint and a JSONL file: a checkpoint that is missing or
  not written by `train`, a malformed line, a missing key, an empty or identical answer, an
  empty file, a character the checkpoint's tokenizer cannot encode are each refused in one
  line naming the file and the line (or the line and column) (section 12). `dpo` runs on
  `train`'s machinery (`tinygrad_lm/runs.py`): the same lock, checkpoints, `--resume` rules
  and signal handling (sections 3 and 11).
"""


def run_all(only=None):
    results = []
    for c in rc.CASES:
        if only and not any(c.id.startswith(o) for o in only):
            continue
        with tempfile.TemporaryDirectory(prefix="tinygrad-lm-case-") as d:
            t = time.perf_counter()
            out = rc.run_case(c, Path(d))
            dt = time.perf_counter() - t
        bad = rc.problems(c, out) if out.code is not None else []
        results.append((c, out, bad, dt))
        mark = "skipped" if out.code is None else ("ok" if not bad else "FAILED: " + "; ".join(bad))
        print(f"{c.id:40s} {dt:5.1f}s  {mark}", flush=True)
    return results


def render(results) -> str:
    from tinygrad_lm.ranges import FLAG_RANGES, flag_name
    lines = [INTRO]
    for klass in rc.CLASSES:
        lines += ["", f"## {klass}", ""]
        if klass.startswith("9."):
            lines += ["The ranges (`tinygrad_lm/ranges.py`); each row below tries the values just outside one, "
                      "and NaN and inf for a float:", "",
                      "| subcommand | flag | allowed |", "| --- | --- | --- |"]
            for command, table in FLAG_RANGES.items():
                for dest, r in table.items():
                    note = f" ({r.note})" if r.note else ""
                    lines.append(f"| {command} | `{flag_name(dest)}` | {r.describe()}{note} |")
            lines.append("")
        lines += ["| case | tried | exit | message | on disk |", "| --- | --- | ---: | --- | --- |"]
        lines += [rc.row(c, out) for c, out, _, _ in results if c.klass == klass]
    n = len(results)
    ran = sum(out.code is not None for _, out, _, _ in results)
    lines += ["", f"{n} cases, {ran} run ({platform.system()}, Python {platform.python_version()}); "
                  f"regenerate with `python benchmarks/reliability_table.py`.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="compare with docs/reliability.md instead of writing it")
    p.add_argument("only", nargs="*", help="run only the cases whose id starts with one of these (with --check)")
    a = p.parse_args(argv)
    results = run_all(a.only if a.check else None)
    failed = [c.id for c, _, bad, _ in results if bad]
    if a.check:
        rows = rc.doc_rows()
        stale = [c.id for c, out, _, _ in results
                 if out.code is not None and rc.stable(rows.get(c.id, "")) != rc.stable(rc.row(c, out))]
        print(f"{len(stale)} rows differ from {rc.DOC.relative_to(ROOT)}: {stale}" if stale else "the table is current")
        return 1 if failed or stale else 0
    if failed:
        print(f"not written: {len(failed)} cases do not get what they expect: {failed}")
        return 1
    rc.DOC.write_text(render(results), encoding="utf-8")
    print(f"wrote {rc.DOC.relative_to(ROOT)}: {len(results)} cases in {sum(r[3] for r in results):.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
