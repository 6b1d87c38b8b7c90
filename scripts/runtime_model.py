#!/usr/bin/env python3
"""An independent model of how PyTorch's pipeline runtime executes a schedule, to decide deadlock.

Written from torch/distributed/pipelining/schedules.py (`_PipelineScheduleRuntime.
_step_microbatches`) and _p2p.py of PyTorch 2.15, not from pipeproof's code, so that the two can
be compared (`--compare BINARY`). Python 3.11, no dependencies.

Each rank runs its row of the schedule in order:
  * SEND_x / RECV_x: posted where it stands (an isend/irecv of its own) on the stream the layout
    gives it: `rank` one stream per rank (default `nccl` backend), `pair` one per unordered rank
    pair (`nccl-lazy`), `edge` one per directed rank edge (`pipeline_per_edge_p2p`). A posted op
    cannot start before the computes written before it (posting makes the NCCL stream wait for
    the compute stream), and runs only after the op before it on the same stream completed.
  * a compute (F, B, I, W, OVERLAP_F_B) waits only for the RECV on this rank that brings its
    input (RECV_F s m for sF m, RECV_B s m for sB m / sI m), not for other posted ops.
  * WAIT_SEND_x s m: the rank waits until that SEND completed.
  * UNSHARD, RESHARD, REDUCE_GRAD, WAIT_REDUCE_GRAD: data-parallel collectives on another
    communicator; no pipeline stream, no effect here.
  * WAIT (pipeproof's extension, DualPipe's batch_isend_irecv + wait): a rank whose row holds a
    WAIT posts the SEND/RECVs written since its previous WAIT as one group at the WAIT (one unit
    per stream it touches) and waits until all of them completed; SEND/RECVs after its last WAIT
    are never posted.
The step ends when every rank reached the end of its row and every posted op completed.

Matching has no tags: the k-th SEND from p to q meets the k-th RECV on q from p. Under `nccl`
a send/recv is a rendezvous: the two complete together, and only while each sits in the unit
its stream is running (the head of its stream). Under `eager` a send completes when posted and
a recv once its send has been posted (streams do not matter).

`pair` set-up (`--setup`): a lazily created pair communicator blocks the posting thread at the
first op between two ranks until the peer reaches its own first op with it. `host` (default):
the host thread blocks, and it runs ahead of the GPU (compute waits and WAIT_SEND are stream
waits), so set-up only depends on each rank's order of first contacts. `device`: the rank blocks
where it stands. `none`: no set-up blocking (PyTorch 2.15's `_preconnect_shared_p2p_edges`
connects every pair before the first step).

Every step of the model is monotone (nothing it enables is disabled later), so running every
enabled step until none is left decides deadlock without search.

Usage:
  runtime_model.py FILE.csv [--layouts rank,pair,edge] [--comm nccl,eager] [-v]
  runtime_model.py FILE.csv --compare build/bin/pipeproof [--stages S --placement v ...] [--no-z3]
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
from collections import deque

ACTION = re.compile(
    r"(\d+)(WAIT_REDUCE_GRAD|WAIT_SEND_F|WAIT_SEND_B|REDUCE_GRAD|UNSHARD|RESHARD"
    r"|SEND_F|RECV_F|SEND_B|RECV_B|F|I|B|W)(\d*)$")
OVERLAP = re.compile(r"\((.*)\)OVERLAP_F_B$")
COMPUTE = {"F", "B", "I", "W", "OVERLAP_F_B"}
COMM = {"SEND_F", "SEND_B", "RECV_F", "RECV_B"}
IGNORED = {"UNSHARD", "RESHARD", "REDUCE_GRAD", "WAIT_REDUCE_GRAD"}


class Act:
    def __init__(self, text, kind, stage=None, mb=None, subs=()):
        self.text, self.kind, self.stage, self.mb, self.subs = text, kind, stage, mb, subs

    def computes(self):
        return self.subs if self.kind == "OVERLAP_F_B" else (self,)


def parse_action(tok: str, where: str) -> Act:
    tok = tok.strip()
    if tok == "WAIT":
        return Act(tok, "WAIT")
    if m := OVERLAP.match(tok):
        subs = tuple(parse_action(t, where) for t in m.group(1).split(";") if t.strip())
        if not subs or any(s.kind not in COMPUTE - {"OVERLAP_F_B"} for s in subs):
            raise ValueError(f"{where}: OVERLAP_F_B must hold compute actions: {tok!r}")
        return Act(tok, "OVERLAP_F_B", subs=subs)
    if m := ACTION.match(tok):
        stage, kind, mb = m.groups()
        if mb == "" and kind not in IGNORED:
            raise ValueError(f"{where}: {tok!r} needs a microbatch index")
        return Act(tok, kind, int(stage), int(mb) if mb else None)
    raise ValueError(f"{where}: not an action: {tok!r}")


def read_schedule(path: str) -> list[list[Act]]:
    """PyTorch CSV (one row per rank, empty cell = idle) or pipeproof .pps ("rank r: a b c")."""
    with open(path, newline="") as f:
        text = f.read()
    rows: list[list[Act]] = []
    if re.search(r"^\s*rank\s+\d+\s*:", text, re.M):
        for n, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0]
            if m := re.match(r"\s*rank\s+(\d+)\s*:(.*)$", line):
                if int(m.group(1)) != len(rows):
                    raise ValueError(f"{path}:{n}: ranks must be listed 0, 1, 2, ...")
                rows.append([parse_action(t, f"{path}:{n}") for t in m.group(2).split()])
        return rows
    for n, row in enumerate(csv.reader(text.splitlines()), 1):
        rows.append([parse_action(c, f"{path}:{n}") for c in row if c.strip()])
    return rows


def placement_of(rows, stages: int | None, placement: str | None) -> dict[int, int]:
    ranks = len(rows)
    if placement in (None, ""):
        place: dict[int, int] = {}  # inferred: the row that computes a stage holds it
        for r, row in enumerate(rows):
            for a in row:
                for c in (a.computes() if a.kind in COMPUTE else ()):
                    if place.setdefault(c.stage, r) != r:
                        raise ValueError(f"stage {c.stage} is computed on ranks {place[c.stage]} and {r}")
        return place
    if placement not in ("loop", "v"):
        return dict(enumerate(int(x) for x in placement.split(",")))
    if stages is None:
        stages = 1 + max(a.stage for row in rows for a in row if a.stage is not None)
    if placement == "loop":
        return {s: s % ranks for s in range(stages)}
    # V: zigzag over chunks of R stages (stage s < R on rank s, then back down, ...)
    return {s: (s % ranks if (s // ranks) % 2 == 0 else ranks - 1 - s % ranks) for s in range(stages)}


class Op:
    __slots__ = ("rank", "peer", "send", "key", "pos", "stream", "partner", "unit", "posted", "done")

    def __init__(self, rank, peer, send, key, pos):
        self.rank, self.peer, self.send, self.key, self.pos = rank, peer, send, key, pos
        self.stream = self.partner = self.unit = None
        self.posted = self.done = False

    def name(self):
        kind, stage, mb = self.key
        return f"rank {self.rank} [{self.pos}] {stage}{kind}{mb}"


def stream_key(op: Op, layout: str):
    if layout == "rank":
        return (op.rank,)
    if layout == "pair":
        return (op.rank, min(op.rank, op.peer), max(op.rank, op.peer))
    src, dst = (op.rank, op.peer) if op.send else (op.peer, op.rank)
    return (op.rank, src, dst)


def simulate(rows, place, layout="rank", comm="nccl", setup="host"):
    """Run the model to its fixpoint. Returns (ok, verdict, lines): verdict is "sound",
    "deadlock" or "set-up deadlock"; lines say where each rank is stuck and which posted ops are
    pending, plus a note on FIFO payload mix-ups (which this model runs through, as NCCL does)."""
    R = len(rows)
    peer_stage = {"SEND_F": 1, "RECV_F": -1, "SEND_B": -1, "RECV_B": 1}
    ops: list[dict] = []  # per rank: position -> Op
    by_key: list[dict] = []  # per rank: (kind, stage, mb) -> Op
    grouped = [any(a.kind == "WAIT" for a in row) for row in rows]
    sends, recvs = {}, {}
    for r, row in enumerate(rows):
        ops.append({})
        by_key.append({})
        for i, a in enumerate(row):
            if a.kind not in COMM:
                continue
            other = a.stage + peer_stage[a.kind]
            if other not in place:
                raise ValueError(f"rank {r} [{i}] {a.text}: no stage {other} to talk to")
            op = Op(r, place[other], a.kind.startswith("SEND"), (a.kind, a.stage, a.mb), i)
            if op.peer == r:
                raise ValueError(f"rank {r} [{i}] {a.text}: stage {other} is on the same rank")
            op.stream = stream_key(op, layout)
            ops[r][i] = op
            if (a.kind, a.stage, a.mb) in by_key[r]:
                raise ValueError(f"rank {r} [{i}] {a.text}: the same op twice")
            by_key[r][(a.kind, a.stage, a.mb)] = op
            (sends if op.send else recvs).setdefault((r, op.peer) if op.send else (op.peer, r), []).append(op)
    mixups = []
    for edge in set(sends) | set(recvs):  # k-th send p->q meets k-th recv on q from p
        for s, q in zip(sends.get(edge, []), recvs.get(edge, [])):
            s.partner, q.partner = q, s
            kind, stage, mb = s.key
            if q.key != ("RECV" + kind[4:], stage + peer_stage[kind], mb):
                mixups.append(f"{s.name()} meets {q.name()}")

    # Where a rank posts: each SEND/RECV itself, or for WAIT rows the WAIT that closes its group.
    posts = []  # per rank: position -> list of ops posted there
    for r, row in enumerate(rows):
        p, group = {}, []
        for i, a in enumerate(row):
            if a.kind in COMM:
                if grouped[r]:
                    group.append(ops[r][i])
                else:
                    p[i] = [ops[r][i]]
            elif a.kind == "WAIT" and group:
                p[i], group = group, []
        posts.append(p)

    # pair set-up at the host: a rendezvous of the two ranks' first contacts, in posting order.
    first_contacts = []
    for r in range(R):
        seen, pts = set(), []
        for i in sorted(posts[r]):
            for op in posts[r][i]:
                if op.peer not in seen:
                    seen.add(op.peer)
                    pts.append((i, op.peer))
        first_contacts.append(pts)
    host_limit = [len(row) + 1 for row in rows]
    host_peer = [None] * R
    use_setup = layout == "pair" and comm == "nccl" and setup != "none"
    if use_setup and setup == "host":
        k = [0] * R
        moved = True
        while moved:
            moved = False
            for r in range(R):
                if k[r] < len(first_contacts[r]):
                    q = first_contacts[r][k[r]][1]
                    if k[q] < len(first_contacts[q]) and first_contacts[q][k[q]][1] == r:
                        k[r] += 1
                        k[q] += 1
                        moved = True
        for r in range(R):
            if k[r] < len(first_contacts[r]):
                host_limit[r], host_peer[r] = first_contacts[r][k[r]]
    connected = set()  # device set-up: (r, q) pairs done
    setup_wait = [None] * R  # device set-up: peer this rank waits for at its pc

    streams: dict[tuple, deque] = {}
    pc = [0] * R
    posted_at = set()  # (rank, position) where its ops were posted

    def post(r, i):
        units = {}
        for op in posts[r][i]:
            op.posted = True
            units.setdefault(op.stream, []).append(op)
            if comm == "eager" and op.send:
                op.done = True
        if comm == "nccl":
            for key, unit in units.items():
                for op in unit:
                    op.unit = unit
                streams.setdefault(key, deque()).append(unit)
        posted_at.add((r, i))

    def blocked(r) -> str | None:
        """Why rank r cannot pass the action at its pc (None: it can)."""
        i, a = pc[r], rows[r][pc[r]]
        if i in posts[r] and (r, i) not in posted_at:
            if i >= host_limit[r]:
                return (f"set-up: its host is blocked at [{host_limit[r]}], its first op with rank "
                        f"{host_peer[r]}, which that rank's host never reaches")
            if use_setup and setup == "device":
                for op in posts[r][i]:
                    if (r, op.peer) not in connected:
                        setup_wait[r] = op.peer
                        if setup_wait[op.peer] == r and posts[op.peer].get(pc[op.peer]) is not None:
                            connected.update({(r, op.peer), (op.peer, r)})
                            setup_wait[r] = setup_wait[op.peer] = None
                            continue
                        return f"set-up: waits for rank {op.peer} to reach its first op with rank {r}"
            post(r, i)
        if a.kind in COMPUTE:
            for c in a.computes():
                need = {"F": "RECV_F", "B": "RECV_B", "I": "RECV_B"}.get(c.kind)
                op = by_key[r].get((need, c.stage, c.mb)) if need else None
                if op is not None and not op.done:
                    if op.pos > i:
                        return f"{c.text} needs {op.name()}, written after it (never received in time)"
                    if not op.posted:
                        return f"{c.text} needs {op.name()}, which is never posted (no WAIT after it)"
                    return f"{c.text} waits for {op.name()}"
        elif a.kind in ("WAIT_SEND_F", "WAIT_SEND_B"):
            op = by_key[r].get(("SEND_" + a.kind[-1], a.stage, a.mb))
            if op is None or op.pos > i:
                return f"{a.text} has no earlier SEND to wait for"
            if not op.done:
                return f"{a.text} waits for {op.name()}"
        elif a.kind == "WAIT" and i in posts[r]:
            left = [op for op in posts[r][i] if not op.done]
            if left:
                return f"WAIT waits for its group: {left[0].name()}" + (
                    f" and {len(left) - 1} more" if len(left) > 1 else "")
        return None

    changed = True
    while changed:
        changed = False
        for r in range(R):
            while pc[r] < len(rows[r]) and blocked(r) is None:
                pc[r] += 1
                changed = True
        if comm == "eager":
            for r in range(R):
                for op in ops[r].values():
                    if op.posted and not op.done and op.partner is not None and op.partner.posted:
                        op.done = True
                        changed = True
            continue
        for key, queue in streams.items():
            while queue:
                for op in queue[0]:
                    if op.done or op.partner is None or not op.partner.posted:
                        continue
                    pq = streams[op.partner.stream]
                    if pq and pq[0] is op.partner.unit:
                        op.done = op.partner.done = True
                        changed = True
                if all(op.done for op in queue[0]):
                    queue.popleft()
                    changed = True
                else:
                    break

    stuck = []
    for r in range(R):
        if pc[r] < len(rows[r]):
            stuck.append(f"rank {r} [{pc[r]}] {rows[r][pc[r]].text}: {blocked(r)}")
    pending = [op for r in range(R) for op in ops[r].values() if op.posted and not op.done]
    for op in pending[:8]:
        why = "has no partner (unmatched)" if op.partner is None else (
            f"its partner {op.partner.name()} is not posted" if not op.partner.posted else
            f"its partner {op.partner.name()} is behind another op on its stream"
            if comm == "nccl" and streams[op.partner.stream] and streams[op.partner.stream][0] is not op.partner.unit
            else "is behind another op on its own stream")
        stuck.append(f"  pending {op.name()} {why}")
    never = [op for r in range(R) for op in ops[r].values() if not op.posted]
    if not stuck and never:
        stuck.append(f"  {len(never)} ops never posted, e.g. {never[0].name()}")
    notes = [f"  payload mix-up ({len(mixups)}): {mixups[0]}"] if mixups else []
    if not stuck:
        return True, "sound", notes
    reason = "set-up deadlock" if any("set-up" in s for s in stuck) else "deadlock"
    return False, reason, stuck + notes


def pipeproof_deadlock(binary, path, layout, comm, flags, timeout):
    cmd = [binary, "verify", path, "--json", "--comm", comm, *flags]
    if comm == "nccl":
        cmd += ["--streams", layout]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout} s", cmd
    if res.returncode == 2:
        return None, "refused: " + (res.stderr.strip().splitlines() or ["(no message)"])[0], cmd
    try:
        checks = json.loads(res.stdout)["checks"]
        dl = next(c for c in checks if c["name"] == "deadlock")
    except (ValueError, KeyError, StopIteration):
        return None, f"no deadlock check in its output (exit {res.returncode})", cmd
    if dl.get("skipped"):
        return None, "deadlock check skipped: " + dl.get("message", ""), cmd
    return bool(dl["ok"]), dl.get("message", ""), cmd


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Semantics: see the module docstring.")
    p.add_argument("file", help="PyTorch CSV (runtime or pipeproof WAIT form) or pipeproof .pps")
    p.add_argument("--layouts", default="rank,pair,edge", help="comma list of rank, pair, edge")
    p.add_argument("--comm", default="nccl,eager", help="comma list of nccl, eager")
    p.add_argument("--setup", choices=["host", "device", "none"], default="host",
                   help="pair set-up blocking (default host)")
    p.add_argument("--stages", type=int, help="number of stages (default: from the file)")
    p.add_argument("--placement", help="loop, v or a comma list (default: inferred from the file)")
    p.add_argument("--microbatches", type=int, help="passed on to pipeproof with --compare")
    p.add_argument("--kind", help="passed on to pipeproof with --compare (e.g. dualpipe)")
    p.add_argument("--compare", metavar="BINARY",
                   help="also run BINARY verify --json per layout and compare the deadlock check; "
                        "exit 1 when a verdict differs or pipeproof gives none")
    p.add_argument("--no-z3", action="store_true", help="passed on to pipeproof with --compare")
    p.add_argument("--timeout", type=float, default=600, help="per pipeproof run, seconds")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("-v", "--verbose", action="store_true", help="show where each rank is stuck")
    a = p.parse_args(argv)

    try:
        rows = read_schedule(a.file)
        place = placement_of(rows, a.stages, a.placement)
        if len(rows) > 1 and not any(x.kind in COMM for row in rows for x in row):
            raise ValueError(f"{a.file} has no SEND/RECV: a compute-only order is not a runtime "
                             "order (lower it first: torch_schedule.py --lower, or pipeproof "
                             "convert --lower --to csv)")
    except (OSError, ValueError) as exc:
        print(f"runtime_model.py: error: {exc}", file=sys.stderr)
        return 2
    layouts = [x for x in a.layouts.split(",") if x]
    comms = [x for x in a.comm.split(",") if x]
    if not set(layouts) <= {"rank", "pair", "edge"} or not set(comms) <= {"nccl", "eager"}:
        p.error("--layouts takes rank, pair, edge; --comm takes nccl, eager")
    runs = [(l, "nccl") for l in layouts if "nccl" in comms] + ([("-", "eager")] if "eager" in comms else [])
    flags = []
    for opt in ("stages", "placement", "microbatches", "kind"):
        if getattr(a, opt) is not None:
            flags += [f"--{opt}", str(getattr(a, opt))]
    if a.no_z3:
        flags.append("--no-z3")

    results, disagree = [], 0
    for layout, comm in runs:
        try:
            ok, reason, stuck = simulate(rows, place, "rank" if layout == "-" else layout, comm, a.setup)
        except ValueError as exc:
            print(f"runtime_model.py: error: {exc}", file=sys.stderr)
            return 2
        entry = {"layout": layout, "comm": comm, "ok": ok, "verdict": reason, "stuck": stuck}
        if a.compare:
            pok, msg, cmd = pipeproof_deadlock(a.compare, a.file, layout, comm, flags, a.timeout)
            entry.update(pipeproof_ok=pok, pipeproof_message=msg,
                         pipeproof_command=" ".join(cmd), agree=(pok == ok))
            disagree += pok != ok
        results.append(entry)
        if not a.json:
            label = f"{comm}/{layout}" if comm == "nccl" else "eager"
            line = f"{label:11} {'sound' if ok else reason.upper()}"
            if a.compare:
                theirs = "refused/failed" if entry["pipeproof_ok"] is None else (
                    "sound" if entry["pipeproof_ok"] else "deadlock")
                line += f"   pipeproof: {theirs}" + ("" if entry["agree"] else "   NO VERDICT"
                                                         if entry["pipeproof_ok"] is None else "   DISAGREE")
                if not entry["agree"]:
                    line += f"\n    {entry['pipeproof_command']}\n    pipeproof says: {msg[:300]}"
            print(line)
            mix = [s for s in stuck if "mix-up" in s]
            shown = stuck if a.verbose else ([] if ok else [s for s in stuck if s not in mix][:6]) + mix
            for s in shown[:14]:
                print("    " + s)
    if a.json:
        json.dump({"file": a.file, "results": results, "disagreements": disagree}, sys.stdout, indent=1)
        print()
    return 1 if disagree else 0


if __name__ == "__main__":
    sys.exit(main())
