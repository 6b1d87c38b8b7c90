#!/usr/bin/env bash
# Runs COMMAND as N ranks under Open MPI's mpirun, on this node or on the hosts of a host file.
#
#   scripts/launch.sh [OPTIONS] N COMMAND [ARGS...]
#     --hostfile FILE  spread the ranks over the hosts in FILE (Open MPI host file: "host slots=8")
#     --oversubscribe  more ranks than cores (on one node without a host file this is automatic)
#     --print          print the mpirun command instead of running it
#     --mpi-notices    keep Open MPI's notices about non-zero exits and MPI_Abort (dropped by
#                      default: pipeproof reports the job itself, once, with its own exit status)
#     --mpirun PATH    the mpirun to use (default: $MPIRUN, else mpirun)
#     -h, --help       this text
#
# e.g.  scripts/launch.sh 8 build/bin/pipeproof run --transport mpi --kind dualpipe -r 8 -m 20
#       scripts/launch.sh --hostfile hosts 16 build/bin/pipeproof run --transport mpi ...
# As the fuzz campaign's launcher: pipeproof fuzz --transport mpi --launcher "scripts/launch.sh {ranks}"
#
# Ranks are mapped and bound by NUMA domain: each rank keeps its compute, communication and
# watchdog threads on one domain's cores (binding each rank to a single core would make them share
# it). Variables pipeproof reads (PIPEPROOF_*), NCCL_*, CUDA_VISIBLE_DEVICES, PATH and
# LD_LIBRARY_PATH go to every rank, so a replay command that sets PIPEPROOF_PLANTED_BUG works
# across nodes too. Exit status: mpirun's; 2 for bad usage.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() {
  echo "launch.sh: $*" >&2
  echo "usage: scripts/launch.sh [--hostfile FILE] [--oversubscribe] [--print] [--mpi-notices] [--mpirun PATH] N COMMAND [ARGS...]" >&2
  exit 2
}

hostfile=""
print=0
oversubscribe=0
keep_notices=0
mpirun="${MPIRUN:-mpirun}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --hostfile) [[ $# -ge 2 ]] || die "--hostfile needs a file"; hostfile="$2"; shift 2 ;;
    --hostfile=*) hostfile="${1#*=}"; shift ;;
    --print) print=1; shift ;;
    --oversubscribe) oversubscribe=1; shift ;;
    --mpi-notices) keep_notices=1; shift ;;
    --mpirun) [[ $# -ge 2 ]] || die "--mpirun needs a path"; mpirun="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    -*) die "unknown option $1" ;;
    *) break ;;
  esac
done

[[ $# -ge 1 ]] || die "missing N, the number of ranks"
ranks="$1"
shift
[[ "$ranks" =~ ^[1-9][0-9]*$ ]] || die "N must be a positive number of ranks, not '$ranks'"
[[ $# -ge 1 ]] || die "missing the COMMAND to launch"
if [[ -n "$hostfile" && ! -r "$hostfile" ]]; then die "cannot read the host file '$hostfile'"; fi

cmd=("$mpirun" -np "$ranks")
if [[ -n "$hostfile" ]]; then cmd+=(--hostfile "$hostfile"); fi
# One node, more ranks than cores: mpirun would refuse ("not enough slots"), so oversubscribe.
cores="$(nproc 2>/dev/null || echo 1)"
if [[ -z "$hostfile" && $oversubscribe -eq 0 && "$ranks" -gt "$cores" ]]; then
  echo "launch.sh: $ranks ranks on $cores cores: oversubscribing" >&2
  oversubscribe=1
fi
if [[ $oversubscribe -eq 1 ]]; then
  cmd+=(--map-by numa:oversubscribe --bind-to numa:overload-allowed)
else
  cmd+=(--map-by numa --bind-to numa)
fi
# Open MPI refuses root unless told; containers often run as root.
if [[ "$(id -u)" -eq 0 ]]; then cmd+=(--allow-run-as-root); fi
while IFS= read -r name; do
  cmd+=(-x "$name")
done < <(compgen -e | grep -E '^(PIPEPROOF_|NCCL_|CUDA_VISIBLE_DEVICES$|PATH$|LD_LIBRARY_PATH$)' | sort)
cmd+=("$@")

if [[ $print -eq 1 ]]; then
  printf '%q' "${cmd[0]}"
  printf ' %q' "${cmd[@]:1}"
  printf '\n'
  exit 0
fi
if [[ $keep_notices -eq 1 ]]; then exec "${cmd[@]}"; fi

# Open MPI frames each notice in dashed lines. Drop the ones that only restate what pipeproof has
# already reported (a non-zero exit, the MPI_Abort that ends a hung job) and the errors its notice
# forwarding (show_help.c) logs while the job is torn down; pass everything else through.
drop_mpi_notices() {
  awk '
    function flush(   i) { if (!drop) for (i = 1; i <= n; i++) print block[i]; n = 0; drop = 0; fflush() }
    /^-----------------------------------------------------------*$/ {
      block[++n] = $0
      if (inside) { flush(); inside = 0 } else inside = 1
      next
    }
    inside {
      block[++n] = $0
      if ($0 ~ /MPI_ABORT was invoked|Primary job +terminated normally|exited with non-zero status/) drop = 1
      next
    }
    /ORTE_ERROR_LOG: .* in file .*show_help\.c/ { next }
    { print; fflush() }
    END { flush() }
  '
}

# mpirun runs as a child so that its stderr can be filtered: stdin is handed on explicitly (a
# background job would get /dev/null) and a TERM, INT or HUP sent to this script reaches it.
# The filter reads through a named pipe, so that it is a job this script can wait for.
fifo_dir="$(mktemp -d)"
trap 'rm -rf "$fifo_dir"' EXIT
mkfifo "$fifo_dir/stderr"
drop_mpi_notices <"$fifo_dir/stderr" >&2 &
filter_pid=$!
"${cmd[@]}" <&0 2>"$fifo_dir/stderr" &
mpirun_pid=$!
trap 'kill -TERM "$mpirun_pid" 2>/dev/null' TERM INT HUP
status=0
while true; do
  wait "$mpirun_pid" && status=0 || status=$?
  kill -0 "$mpirun_pid" 2>/dev/null || break  # a trapped signal ends `wait` early
done
wait "$filter_pid" || true  # the filter drains mpirun's last notices
exit "$status"
