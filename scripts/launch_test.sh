#!/usr/bin/env bash
# scripts/launch.sh's argument handling, through --print (no mpirun runs): the one-node and host
# file forms, quoting, exported variables, root, and refusals with exit status 2.
set -uo pipefail
launch="$(dirname "$0")/launch.sh"
failures=0
check() {  # check NAME EXPECTED ACTUAL
  if [[ "$2" != "$3" ]]; then
    echo "FAIL $1"
    echo "  expected: $2"
    echo "  actual:   $3"
    failures=$((failures + 1))
  else
    echo "ok   $1"
  fi
}
contains() {  # contains NAME NEEDLE HAYSTACK
  if [[ "$3" != *"$2"* ]]; then
    echo "FAIL $1: '$2' not in: $3"
    failures=$((failures + 1))
  else
    echo "ok   $1"
  fi
}
root=""
if [[ "$(id -u)" -eq 0 ]]; then root=" --allow-run-as-root"; fi

# More ranks than this machine has cores: oversubscribed, as it must be on one node.
binding() { if [[ "$1" -gt "$(nproc)" ]]; then echo "--map-by numa:oversubscribe --bind-to numa:overload-allowed"; else echo "--map-by numa --bind-to numa"; fi; }
out="$(env -i PATH=/usr/bin:/bin "$launch" --print 8 pipeproof fuzz --seed 3 2>/dev/null)"
check "one node" "mpirun -np 8 $(binding 8)$root -x PATH pipeproof fuzz --seed 3" "$out"
out="$(env -i PATH=/usr/bin:/bin "$launch" --print 1000 true 2>&1 >/dev/null)"
contains "says when it oversubscribes" "1000 ranks on $(nproc) cores: oversubscribing" "$out"
out="$(env -i PATH=/usr/bin:/bin "$launch" --oversubscribe --print 1 true)"
check "--oversubscribe" "mpirun -np 1 --map-by numa:oversubscribe --bind-to numa:overload-allowed$root -x PATH true" "$out"

hosts="$(mktemp)"
trap 'rm -f "$hosts"' EXIT
echo "localhost slots=4" > "$hosts"
out="$(env -i PATH=/usr/bin:/bin "$launch" --hostfile "$hosts" --print --mpirun /opt/mpi/bin/mpirun -- 16 ./a 'x y')"
check "host file, mpirun path, quoting" \
  "/opt/mpi/bin/mpirun -np 16 --hostfile $hosts --map-by numa --bind-to numa$root -x PATH ./a x\\ y" "$out"

out="$(env -i PATH=/usr/bin:/bin PIPEPROOF_PLANTED_BUG=skip-arrival-wait NCCL_DEBUG=INFO OTHER=1 \
  MPIRUN=mpiexec "$launch" --print 2 true 2>/dev/null)"
check "exported variables, \$MPIRUN" \
  "mpiexec -np 2 $(binding 2)$root -x NCCL_DEBUG -x PATH -x PIPEPROOF_PLANTED_BUG true" "$out"

for bad in "" "0 cmd" "-3 cmd" "x cmd" "4" "--hostfile" "--hostfile /nonexistent/hosts 2 cmd" "--bogus 2 cmd"; do
  # shellcheck disable=SC2086
  err="$("$launch" --print $bad 2>&1 >/dev/null)"
  status=$?
  check "refuses '$bad' with status 2" 2 "$status"
  contains "says why for '$bad'" "usage: scripts/launch.sh" "$err"
done

# Open MPI's notices that only restate pipeproof's own report are dropped; other notices, the
# output, stdin and the exit status pass through. A stand-in mpirun prints what Open MPI prints.
scratch="$(mktemp -d)"
trap 'rm -f "$hosts"; rm -rf "$scratch"' EXIT
dashes="--------------------------------------------------------------------------"
cat > "$scratch/mpirun" <<FAKE
#!/usr/bin/env bash
trap 'echo "mpirun got TERM" >&2; exit 143' TERM
[[ "\${*: -1}" == "wait" ]] && { sleep 30 & wait; }
cat  # stdin goes to rank 0
echo "result: hang (exit 3)" >&2
printf '%s\nMPI_ABORT was invoked on rank 0 in communicator MPI_COMM_WORLD\nwith errorcode 3.\n%s\n' "$dashes" "$dashes" >&2
echo "[vm:02061] [[25843,0],0] ORTE_ERROR_LOG: Data unpack would read past end of buffer in file ../../../orte/util/show_help.c at line 501" >&2
echo "[vm:26377] [[3063,0],0] ORTE_ERROR_LOG: Out of resource in file ../../../orte/util/show_help.c at line 507" >&2
printf '%s\nPrimary job  terminated normally, but 1 process returned\na non-zero exit code.\n%s\n' "$dashes" "$dashes" >&2
printf '%s\nmpirun was unable to find the specified executable file\n%s\n' "$dashes" "$dashes" >&2
printf '%s\nmpirun detected that one or more processes exited with non-zero status, thus causing\n  Exit code:    3\n%s\n' "$dashes" "$dashes" >&2
exit 3
FAKE
chmod +x "$scratch/mpirun"
out="$(echo "schedule on stdin" | "$launch" --mpirun "$scratch/mpirun" 2 pipeproof 2>"$scratch/err")"
status=$?
err="$(cat "$scratch/err")"
check "exit status passes through" 3 "$status"
check "stdin reaches the ranks" "schedule on stdin" "$out"
contains "pipeproof's report stays" "result: hang (exit 3)" "$err"
contains "other notices stay" "unable to find the specified executable" "$err"
for dropped in "MPI_ABORT was invoked" "ORTE_ERROR_LOG" "Primary job" "exited with non-zero status"; do
  if [[ "$err" == *"$dropped"* ]]; then echo "FAIL drops '$dropped'"; failures=$((failures + 1)); else echo "ok   drops '$dropped'"; fi
done
check "a dropped notice leaves no dashes behind" 2 "$(grep -c -- "$dashes" "$scratch/err")"
err="$("$launch" --mpi-notices --mpirun "$scratch/mpirun" 2 pipeproof </dev/null 2>&1 >/dev/null)"
contains "--mpi-notices keeps them" "MPI_ABORT was invoked" "$err"
"$launch" --mpirun "$scratch/mpirun" 2 pipeproof wait </dev/null 2>"$scratch/err" &
launcher=$!
sleep 1
kill -TERM "$launcher"
wait "$launcher"
check "TERM reaches mpirun and ends the job" 143 "$?"
contains "mpirun saw the TERM" "mpirun got TERM" "$(cat "$scratch/err")"

out="$("$launch" --help)"
contains "help" "--hostfile FILE" "$out"

if [[ $failures -ne 0 ]]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all checks passed"
