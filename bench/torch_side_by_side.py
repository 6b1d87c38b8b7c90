#!/usr/bin/env python3
"""`pipeproof verify --no-z3` beside PyTorch's own dry-run simulator, on the same schedules.

For each case the schedule class is built as PyTorch builds it (scripts/torch_schedule.py), its
compute order is lowered by PyTorch's `_add_send_recv` and simulated by `_simulate_comms_compute`
(what PyTorch's tests do to check a schedule), and the lowered order, written as PyTorch's CSV, is
verified by `pipeproof verify --no-z3`. PyTorch is timed in this process (its import and the
schedule's construction left out); pipeproof as a user runs it, process start included. Each
figure is the best of --repeats runs, so compare the ratios of one run: the machine is shared.

Needs a Python where `import torch.distributed.pipelining` works (a CPU is enough), e.g. a venv
with `pip install --no-deps torch` and the pure-Python packages its import asks for. No test runs
this; it is the figure for issue 13's side-by-side aim (100 times PyTorch's simulator).

  bench/torch_side_by_side.py [--pipeproof build/bin/pipeproof] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import csv
import os
import shlex
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "scripts"))

import torch_schedule  # noqa: E402  (scripts/torch_schedule.py: builds PyTorch's classes)

# (class, ranks, microbatches): the sizes issue 13 measured, about 100k actions each, and a
# smaller and a larger one beside them.
CASES = [
    ("Interleaved1F1B", 32, 256),
    ("ZBVZeroBubble", 32, 256),
    ("Interleaved1F1B", 8, 64),
    ("Interleaved1F1B", 32, 1024),
]


def best(repeats: int, run) -> float:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return min(seconds)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pipeproof", default=os.path.join(HERE, "..", "build", "bin", "pipeproof"))
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    schedules, _ = torch_schedule._import_torch()
    print(f"{'schedule':<24} {'actions':>8} {'torch lower s':>13} {'torch sim s':>11} "
          f"{'pipeproof s':>11} {'ratio':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, ranks, microbatches in CASES:
            sched, kind = torch_schedule.build(name, ranks, microbatches)
            stages, placement = torch_schedule.topology(sched, kind, ranks, microbatches)
            mapping = dict(sched.stage_index_to_group_rank)
            rank_of = lambda s: mapping[s]  # noqa: E731
            compute = {r: [x for x in row if x is not None] for r, row in sched.pipeline_order.items()}
            lowered = schedules._add_send_recv(copy.deepcopy(compute), rank_of, stages)
            lower_s = best(a.repeats, lambda: schedules._add_send_recv(copy.deepcopy(compute), rank_of, stages))
            sim_s = best(a.repeats, lambda: schedules._simulate_comms_compute(lowered, rank_of, stages))
            path = os.path.join(tmp, f"{name}-{ranks}x{microbatches}.csv")
            with open(path, "w", newline="") as f:
                writer = csv.writer(f)  # the writer PyTorch's _dump_csv uses
                for r in sorted(lowered):
                    writer.writerow(lowered[r])
            command = shlex.split(torch_schedule.verify_command(
                a.pipeproof, path, stages, placement, microbatches, ["--no-z3"]))
            verdict = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if verdict.returncode != 0:
                print(f"pipeproof verify failed on {path}:\n{verdict.stdout}", file=sys.stderr)
                return 1
            pipeproof_s = best(a.repeats, lambda: subprocess.run(command, stdout=subprocess.DEVNULL, check=True))
            actions = sum(len(row) for row in lowered.values())
            label = f"{name} {ranks}x{microbatches}"
            print(f"{label:<24} {actions:>8} {lower_s:>13.3f} {sim_s:>11.3f} {pipeproof_s:>11.4f} "
                  f"{(lower_s + sim_s) / pipeproof_s:>6.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
