#!/usr/bin/env bash
# A job whose rank dies, or whose compiled code's all-reduce times out, must
# end on every rank within a bounded time, and say which rank. Run by ctest:
#
#   comm_rank_dies.sh MPIEXEC NUMPROC_FLAG MOIR_COMM_TEST
#
# The launcher runs under `timeout 120`; each case must end within 60 s with
# a non-zero status that is not timeout's.
set -u
mpiexec="$1" np="$2" test="$3"
passed=0 failed=0
out="$(mktemp)"
trap 'rm -f "$out"' EXIT

expect() { # DESCRIPTION CONDITION...
  local what="$1"
  shift
  if "$@"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAIL: $what" >&2
    sed 's/^/  | /' "$out" >&2
  fi
}

# run RANKS ARGS...: sets status and seconds.
run() {
  local ranks="$1"
  shift
  local start=$SECONDS
  timeout 120 "$mpiexec" "$np" "$ranks" "$test" "$@" >"$out" 2>&1
  status=$?
  seconds=$((SECONDS - start))
}

# Open MPI names the failed process [[job,step],rank]; other launchers are
# only asked to mention the rank.
if "$mpiexec" --version 2>&1 | grep -q "Open MPI"; then
  rank1='\[\[[0-9]+,[0-9]+\],1\]'
else
  rank1='rank 1'
fi

# Rank 1 exits with status 3 while ranks 0 and 2 wait in a barrier.
run 3 --die-rank 1
expect "a dying rank ends the job with a failure status (got $status)" \
  test "$status" -ne 0 -a "$status" -ne 124
expect "the job ends within 60 s of a rank dying (took $seconds s)" test "$seconds" -lt 60
expect "the launcher names rank 1 and its exit status 3" \
  grep -Eq "$rank1" "$out"
expect "the exit status 3 is reported" grep -Eq "[Ee]xit code: *3|EXIT CODE: 3" "$out"

# Rank 0's compiled all-reduce has no partner (rank 1 sleeps 90 s): it must
# time out after MOIR_COMM_TIMEOUT=2 and abort every rank.
MOIR_COMM_TIMEOUT=2 run 2 --abort-in-compiled
expect "a timed-out compiled all-reduce ends the job with a failure status (got $status)" \
  test "$status" -ne 0 -a "$status" -ne 124
expect "the job ends within 60 s of the time-out (took $seconds s)" test "$seconds" -lt 60
expect "the failing rank says what failed" \
  grep -q "moir: rank 0 of 2: all-reduce of 4 floats from compiled code (mpi): MPI_Iallreduce timed out after 2 s" "$out"
expect "the message says why a collective can time out" \
  grep -q "a rank is missing, dead or running a different program" "$out"
expect "moir_rt_all_reduce_sum_f32 did not return after the failure" bash -c "! grep -q 'rank 0: moir_rt_all_reduce_sum_f32 returned' '$out'"

echo "comm rank dies: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
