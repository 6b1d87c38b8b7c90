#!/usr/bin/env python3
"""Dump a torch.distributed.pipelining schedule as PyTorch builds it, for `pipeproof verify`.

Runs wherever `import torch.distributed.pipelining` works (CPU is enough; no process group and
no model are needed). The schedule class is built with mock stages, the way PyTorch's own
test/distributed/pipelining/test_schedule.py does, and the order it would run is written as a
PyTorch CSV (one row per rank, one action per cell, no header).

What is written:

* Multi-stage schedules (every `_PipelineScheduleRuntime` subclass: Interleaved1F1B, LoopedBFS,
  InterleavedZeroBubble, ZBVZeroBubble, DualPipeV, ...): `pipeline_order_with_comms`, exactly
  what `_PipelineScheduleRuntime._step_microbatches` executes, written by PyTorch's own
  `_dump_csv(format="compute_comms")`: compute, SEND/RECV, WAIT_SEND_F/B, UNSHARD, RESHARD,
  REDUCE_GRAD, WAIT_REDUCE_GRAD, OVERLAP_F_B. `--format compute_only` writes `pipeline_order`
  instead (`_dump_csv(format="compute_only")`: empty cells are PyTorch's idle steps).
* Single-stage schedules (GPipe, 1F1B: `PipelineScheduleSingle` subclasses): PyTorch has no
  runtime action list for them (their `_step_microbatches` issues batched P2P directly), so the
  compute-only `pipeline_order` from `_get_pipeline_order()` is written with the csv writer
  `_dump_csv` uses (PyTorch already drops the idle steps when it appends REDUCE_GRAD). `--lower` instead hands that compute order to a plain
  `_PipelineScheduleRuntime` (as `_load_csv(format="compute_only")` would) and writes the
  runtime order PyTorch's lowering makes of it; this fails where PyTorch's compute order is not
  a valid schedule (1F1B numbers the last rank's forwards 1..M), and the error is reported.

The `pipeproof verify` command with the topology flags the file needs (--stages, --placement,
--microbatches) is printed on stderr, or alone on stdout with --print-command.

Exit status: 0 written; 1 torch.distributed.pipelining is not importable; 2 bad usage; 3 PyTorch
refuses the class at these sizes/options (its own message is printed, e.g. "Cannot satisfy
max_outstanding_sends=0").

Examples:
  scripts/torch_schedule.py Interleaved1F1B -r 4 -v 2 -m 8 -o i1f1b.csv
  scripts/torch_schedule.py DualPipeV -r 4 -m 8 --defer-pp-recv --max-outstanding-sends 1 -o d.csv
  scripts/torch_schedule.py GPipe -r 4 -m 4 -o gpipe.csv          # compute-only pipeline_order
  scripts/torch_schedule.py --list
"""

from __future__ import annotations

import argparse
import csv
import inspect
import io
import shlex
import sys
import warnings

EXIT_USAGE = 2
EXIT_TORCH = 3


class ScheduleError(Exception):
    """A schedule PyTorch refuses to build at these sizes/options (its message is kept)."""


def _import_torch():
    warnings.filterwarnings("ignore")  # e.g. "Failed to initialize NumPy" on numpy-less installs
    try:
        import torch.distributed.pipelining.schedules as schedules
        from torch.distributed.pipelining._utils import generate_stage_to_rank_mapping
    except Exception as exc:  # ImportError, or torch built without distributed
        raise SystemExit(
            f"torch_schedule.py: error: cannot import torch.distributed.pipelining: {exc}"
        ) from exc
    return schedules, generate_stage_to_rank_mapping


class MockStage:
    """The part of a PipelineStage that building a schedule reads (no module, no process group)."""

    def __init__(self, stage_index: int, num_stages: int, group_size: int, group_rank: int):
        self.stage_index = stage_index
        self.num_stages = num_stages
        self.group_size = group_size
        self.group_rank = group_rank
        self.submod = None  # not an nn.Module: the torch.compile check skips it
        self.stage_index_to_group_rank: dict[int, int] = {}

    @property
    def is_first(self) -> bool:
        return self.stage_index == 0

    @property
    def is_last(self) -> bool:
        return self.stage_index == self.num_stages - 1


def schedule_classes(schedules) -> dict[str, type]:
    """Every concrete schedule class in torch.distributed.pipelining.schedules, by class name."""
    found: dict[str, type] = {}
    pending = [schedules._PipelineSchedule]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            pending.append(sub)
            if not inspect.isabstract(sub):
                found[sub.__name__] = sub
    return found


def resolve_class(schedules, name: str) -> type:
    """A class by name: `get_schedule_class` names ("1F1B", "DualPipeV"), or a class name
    ("ScheduleGPipe", "_ScheduleForwardOnly"), case-insensitive, with or without "Schedule"."""
    classes = schedule_classes(schedules)
    try:
        return schedules.get_schedule_class(name)
    except ValueError:
        pass
    wanted = name.lower()
    for cls_name, cls in classes.items():
        bare = cls_name.lstrip("_").lower()
        if wanted in (cls_name.lower(), bare, bare.removeprefix("schedule")):
            return cls
    raise ScheduleError(
        f"unknown schedule class {name!r}; known: {', '.join(sorted(classes))}"
    )


def is_v_class(schedules, cls: type) -> bool:
    return issubclass(cls, (schedules.ScheduleZBVZeroBubble, schedules.ScheduleDualPipeV))


def build(
    name: str,
    ranks: int,
    microbatches: int,
    stages_per_rank: int | None = None,
    *,
    defer_pp_recv: bool = False,
    max_outstanding_sends: int | None = None,
    max_active_stages: int | None = None,
    unshard_lookahead: str | None = None,
    defer_reduce_grad_wait: bool = False,
    lower: bool = False,
):
    """Build the schedule object. Returns (schedule, kind) where kind is "multi" or "single"."""
    schedules, stage_to_rank = _import_torch()
    cls = resolve_class(schedules, name)
    if ranks < 1 or microbatches < 1:
        raise ScheduleError("--ranks and --microbatches must be positive")
    single = issubclass(cls, schedules.PipelineScheduleSingle)
    runtime = issubclass(cls, schedules._PipelineScheduleRuntime)
    if not single and not runtime:
        raise ScheduleError(
            f"{cls.__name__} builds no schedule of its own (it is a base class); "
            "give a concrete class, see --list"
        )
    options = {
        "defer_pp_recv": defer_pp_recv or None,
        "max_outstanding_sends": max_outstanding_sends,
        "max_active_stages": max_active_stages,
        "unshard_lookahead": unshard_lookahead,
        "defer_reduce_grad_wait": defer_reduce_grad_wait or None,
    }
    given = {k: v for k, v in options.items() if v is not None}
    loss_fn = lambda output, target: output  # noqa: E731  (a loss makes it a training schedule)

    if single:
        if stages_per_rank not in (None, 1):
            raise ScheduleError(f"{cls.__name__} is a single-stage schedule: one stage per rank")
        if given and not lower:
            raise ScheduleError(
                f"{', '.join('--' + k.replace('_', '-') for k in given)} only apply to "
                f"_PipelineScheduleRuntime schedules; {cls.__name__} is single-stage "
                "(add --lower to run its compute order through the runtime's lowering)"
            )
        try:
            sched = cls(MockStage(0, ranks, ranks, 0), microbatches, loss_fn=loss_fn)
        except (ValueError, AssertionError, RuntimeError) as exc:
            raise ScheduleError(f"{cls.__name__}: {exc}") from exc
        if sched.pipeline_order is None:
            raise ScheduleError(f"{cls.__name__} has no pipeline_order (_get_pipeline_order)")
        if not lower:
            return sched, "single"
        # As _load_csv(format="compute_only") would: lower PyTorch's compute order.
        # Only the compute actions: the lowering adds its own REDUCE_GRAD/UNSHARD/RESHARD.
        compute = {r: [a for a in row if a is not None and a.is_compute_op]
                   for r, row in sched.pipeline_order.items()}
        stages = [MockStage(0, ranks, ranks, 0)]
        try:
            rt = schedules._PipelineScheduleRuntime(stages, microbatches, loss_fn=loss_fn, **given)
            rt.pipeline_order = compute
            rt._prepare_schedule_with_comms(compute)
        except (ValueError, AssertionError, RuntimeError) as exc:
            raise ScheduleError(
                f"PyTorch's runtime lowering refuses {cls.__name__}'s pipeline_order: "
                f"{str(exc).splitlines()[0]}"
            ) from exc
        return rt, "multi"

    if stages_per_rank is None:
        stages_per_rank = 2
    if stages_per_rank < 1:
        raise ScheduleError("--stages-per-rank must be positive")
    num_stages = ranks * stages_per_rank
    style = "v" if is_v_class(schedules, cls) else "loop"
    try:
        mapping = stage_to_rank(ranks, num_stages, style=style)
    except ValueError as exc:
        raise ScheduleError(str(exc)) from exc
    # Rank 0's stages; every rank computes the whole pipeline_order, so one rank is enough.
    stages = [MockStage(s, num_stages, ranks, 0) for s in range(num_stages) if mapping[s] == 0]
    accepted = inspect.signature(cls.__init__).parameters
    unknown = [k for k in given if k not in accepted]
    if unknown:
        raise ScheduleError(f"{cls.__name__} does not take {', '.join(unknown)}")
    try:
        sched = cls(stages, microbatches, loss_fn=loss_fn, **given)
    except (ValueError, AssertionError, RuntimeError, ZeroDivisionError) as exc:
        raise ScheduleError(f"{cls.__name__}: {str(exc).splitlines()[0]}") from exc
    return sched, "multi"


def to_csv(sched, kind: str, fmt: str = "compute_comms") -> str:
    """The CSV text. For multi-stage schedules it is PyTorch's own `_dump_csv` writer."""
    if kind == "multi":
        import os
        import tempfile

        fd, path = tempfile.mkstemp(suffix=".csv")
        os.close(fd)
        try:
            sched._dump_csv(path, format=fmt)
            with open(path, newline="") as f:
                return f.read()
        finally:
            os.unlink(path)
    if fmt != "compute_only":
        raise ScheduleError(
            "a single-stage schedule has no compute_comms order in PyTorch; "
            "use --format compute_only (the default for it) or --lower"
        )
    out = io.StringIO(newline="")
    writer = csv.writer(out)  # the same writer _dump_csv uses: None is an empty cell
    for rank in sched.pipeline_order:
        writer.writerow(sched.pipeline_order[rank])
    return out.getvalue()


def topology(sched, kind: str, ranks: int, microbatches: int) -> tuple[int, str]:
    """(number of stages, --placement value) of the built schedule."""
    if kind == "single":
        return ranks, "loop"
    mapping = dict(sched.stage_index_to_group_rank)
    num_stages = sched._num_stages
    ranks_of = [mapping[s] for s in range(num_stages)]
    if ranks_of == [s % ranks for s in range(num_stages)]:
        return num_stages, "loop"
    _, stage_to_rank = _import_torch()
    if num_stages % ranks == 0 and ranks_of == [
        stage_to_rank(ranks, num_stages, style="v")[s] for s in range(num_stages)
    ]:
        return num_stages, "v"
    return num_stages, ",".join(map(str, ranks_of))


def verify_command(binary: str, path: str, stages: int, placement: str, microbatches: int,
                   extra: list[str]) -> str:
    args = [binary, "verify", path, "--stages", str(stages), "--placement", placement,
            "--microbatches", str(microbatches), *extra]
    return " ".join(shlex.quote(a) for a in args)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="See the module docstring (head -40 of this file) for what is written.",
    )
    p.add_argument("schedule", nargs="?",
                   help="class: GPipe, 1F1B, Interleaved1F1B, LoopedBFS, InterleavedZeroBubble, "
                        "ZBVZeroBubble, DualPipeV, or any schedule class name (see --list)")
    p.add_argument("-r", "--ranks", type=int, help="pipeline ranks (pp group size)")
    p.add_argument("-m", "--microbatches", type=int, help="number of microbatches")
    p.add_argument("-v", "--stages-per-rank", type=int,
                   help="stages per rank for multi-stage classes (default 2; ZBV/DualPipeV need 2)")
    p.add_argument("--defer-pp-recv", action="store_true", help="defer_pp_recv=True")
    p.add_argument("--max-outstanding-sends", type=int, metavar="N", help="max_outstanding_sends=N")
    p.add_argument("--max-active-stages", type=int, metavar="N", help="max_active_stages=N (FSDP)")
    p.add_argument("--unshard-lookahead", metavar="full|auto", help="unshard_lookahead (FSDP)")
    p.add_argument("--defer-reduce-grad-wait", action="store_true", help="defer_reduce_grad_wait=True")
    p.add_argument("--format", choices=["compute_comms", "compute_only"],
                   help="compute_comms (default for multi-stage: pipeline_order_with_comms) or "
                        "compute_only (pipeline_order; the only one single-stage classes have)")
    p.add_argument("--lower", action="store_true",
                   help="single-stage classes: write the runtime order PyTorch's lowering "
                        "(_PipelineScheduleRuntime) makes of their compute-only pipeline_order")
    p.add_argument("-o", "--output", metavar="FILE", help="write the CSV here (default: stdout)")
    p.add_argument("--print-command", action="store_true",
                   help="print only the pipeproof verify command on stdout (needs -o)")
    p.add_argument("--pipeproof", default="pipeproof", metavar="BIN",
                   help="binary named in the printed command (default: pipeproof)")
    p.add_argument("--verify-args", default="", metavar="'ARGS'",
                   help="extra arguments appended to the printed command, e.g. '--streams pair'")
    p.add_argument("--list", action="store_true", help="list the schedule classes and exit")
    a = p.parse_args(argv)

    if a.list:
        schedules, _ = _import_torch()
        for name, cls in sorted(schedule_classes(schedules).items()):
            kind = ("single-stage (compute-only pipeline_order)"
                    if issubclass(cls, schedules.PipelineScheduleSingle)
                    else "multi-stage runtime (pipeline_order_with_comms)"
                    if issubclass(cls, schedules._PipelineScheduleRuntime) else "base class")
            print(f"{name:32} {kind}")
        return 0
    if not a.schedule:
        p.error("give a schedule class (or --list)")
    if a.ranks is None or a.microbatches is None:
        p.error("--ranks and --microbatches are required")
    if a.print_command and not a.output:
        p.error("--print-command needs -o FILE (the CSV cannot share stdout with the command)")
    if a.max_outstanding_sends is not None and a.max_outstanding_sends < 0:
        p.error("--max-outstanding-sends must be >= 0")

    try:
        sched, kind = build(
            a.schedule, a.ranks, a.microbatches, a.stages_per_rank,
            defer_pp_recv=a.defer_pp_recv, max_outstanding_sends=a.max_outstanding_sends,
            max_active_stages=a.max_active_stages, unshard_lookahead=a.unshard_lookahead,
            defer_reduce_grad_wait=a.defer_reduce_grad_wait, lower=a.lower)
        fmt = a.format or ("compute_comms" if kind == "multi" else "compute_only")
        text = to_csv(sched, kind, fmt)
    except ScheduleError as exc:
        print(f"torch_schedule.py: error: {exc}", file=sys.stderr)
        return EXIT_TORCH
    stages, placement = topology(sched, kind, a.ranks, a.microbatches)

    if a.output:
        with open(a.output, "w", newline="") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    what = ("pipeline_order_with_comms (runtime order)" if fmt == "compute_comms"
            else "pipeline_order (compute only)")
    cmd = verify_command(a.pipeproof, a.output or "FILE.csv", stages, placement,
                         a.microbatches, shlex.split(a.verify_args))
    if a.print_command:
        print(cmd)
    else:
        print(f"# {what}; {a.ranks} ranks, {stages} stages ({placement}), "
              f"{a.microbatches} microbatches", file=sys.stderr)
        print(cmd, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
