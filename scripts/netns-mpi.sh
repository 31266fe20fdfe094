#!/usr/bin/env bash
# Runs an MPI job with one rank per Linux network namespace, so that the ranks
# can talk only over TCP across virtual Ethernet links: the multi-node path
# (Open MPI's TCP transport, no shared memory) on one machine.
#
#   scripts/netns-mpi.sh [-n RANKS] [--min-bytes BYTES] [--timeout SECONDS] -- COMMAND ARGS...
#   scripts/netns-mpi.sh --probe
#
# RANKS (default 2) namespaces moir-ns<pid>-<r> each get one veth link,
# 10.231.0.<r+1>/24, to a bridge in a namespace of its own (moir-ns<pid>-sw):
# nothing is added to this machine's own network, so the subnet cannot clash
# with it, and parallel runs use different namespaces. mpirun runs in the
# first namespace and starts one Open MPI daemon (orted) per namespace
# through an rsh agent that is `ip netns exec`; every rank runs COMMAND ARGS
# (same working directory and files: namespaces share the filesystem).
# Shared memory is switched off (pml ob1, btl tcp,self, no vader, no sm/han
# collectives) and both the daemons' channel and the MPI byte transfer layer
# are bound to the veth subnet; the byte transfer layer listens on ports
# 10240-10303, which an htb class on each link counts apart from the
# launcher's traffic.
#
# Prints each link's byte counts to stderr; fails (status 1) when the MPI
# bytes the links carried are below BYTES (default 1: some). Exits with
# COMMAND's status otherwise, 124 when the job ran past SECONDS (default
# 300; a rank that cannot reach another would otherwise wait forever).
# Without root, `ip netns` or mpirun (an unprivileged container), prints
# `netns-mpi: unsupported: <why>` and exits 77; --probe only checks that
# (status 0 or 77). Needs iproute2 and Open MPI. Everything it creates is
# removed on exit, Ctrl-C included.
set -uo pipefail

ranks=2
min_bytes=1
timeout_s=300
probe=0
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    -n) ranks="$2"; shift 2 ;;
    --min-bytes) min_bytes="$2"; shift 2 ;;
    --timeout) timeout_s="$2"; shift 2 ;;
    --probe) probe=1; shift ;;
    --) shift; break ;;
    *) echo "netns-mpi: unknown argument '$1' (usage: netns-mpi.sh [-n RANKS] [--min-bytes BYTES] [--timeout SECONDS] -- COMMAND ARGS...)" >&2; exit 2 ;;
  esac
done
if [ "$probe" = 0 ] && [ $# -eq 0 ]; then
  echo "netns-mpi: no command (usage: netns-mpi.sh [-n RANKS] [--min-bytes BYTES] [--timeout SECONDS] -- COMMAND ARGS...)" >&2
  exit 2
fi
case "$ranks" in
  [1-9] | [1-9][0-9]) ;;
  *) echo "netns-mpi: -n expects 1 to 99 ranks, got '$ranks'" >&2; exit 2 ;;
esac

unsupported() {
  echo "netns-mpi: unsupported: $*" >&2
  exit 77
}
[ "$(id -u)" = 0 ] || unsupported "not root (network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN)"
command -v ip >/dev/null || unsupported "ip (iproute2) not found"
command -v mpirun >/dev/null || unsupported "mpirun not found (install openmpi-bin)"

prefix="moir-ns$$"
switch="$prefix-sw"
subnet=10.231.0.0/24
btl_port=10240   # 64 ports, below the kernel's ephemeral range (32768-)
namespaces=()
tmp=""
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  local ns
  for ns in "${namespaces[@]}"; do ip netns delete "$ns" 2>/dev/null; done
  [ -n "$tmp" ] && rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The probe: a namespace with a veth link, as the real run makes them.
if ! error="$(ip netns add "$switch" 2>&1)"; then
  unsupported "ip netns add: $error"
fi
namespaces+=("$switch")
if ! error="$(ip -n "$switch" link add name probe0 type veth peer name probe1 2>&1 &&
              ip -n "$switch" link add name br0 type bridge 2>&1)"; then
  unsupported "veth or bridge in a network namespace: $error"
fi
ip -n "$switch" link delete probe0
[ "$probe" = 1 ] && exit 0

fail() {
  echo "netns-mpi: $*" >&2
  exit 1
}
ip -n "$switch" link set br0 up || fail "cannot bring up the bridge in $switch"
counting=1
hostfile_lines=""
for ((r = 0; r < ranks; r++)); do
  ns="$prefix-$r"
  addr="10.231.0.$((r + 1))"
  ip netns add "$ns" || fail "ip netns add $ns failed"
  namespaces+=("$ns")
  ip -n "$switch" link add name "v$r" type veth peer name eth0 netns "$ns" &&
    ip -n "$switch" link set "v$r" master br0 up &&
    ip -n "$ns" link set lo up &&
    ip -n "$ns" addr add "$addr/24" dev eth0 &&
    ip -n "$ns" link set eth0 up ||
    fail "cannot connect $ns to the bridge"
  # Sent bytes of the byte transfer layer's connections (a listening port
  # at either end) in class 1:1, the rest in 1:2. Optional: without htb or
  # u32 in this kernel only the links' totals are reported.
  if [ "$counting" = 1 ]; then
    {
      tc -n "$ns" qdisc add dev eth0 root handle 1: htb default 2 r2q 100000 &&
        tc -n "$ns" class add dev eth0 parent 1: classid 1:1 htb rate 100gbit &&
        tc -n "$ns" class add dev eth0 parent 1: classid 1:2 htb rate 100gbit &&
        tc -n "$ns" filter add dev eth0 parent 1: protocol ip prio 1 u32 \
          match ip protocol 6 0xff match ip dport "$btl_port" 0xffc0 flowid 1:1 &&
        tc -n "$ns" filter add dev eth0 parent 1: protocol ip prio 2 u32 \
          match ip protocol 6 0xff match ip sport "$btl_port" 0xffc0 flowid 1:1
    } >/dev/null 2>&1 || counting=0
  fi
  hostfile_lines+="$addr slots=1"$'\n'
done

tmp="$(mktemp -d "${TMPDIR:-/tmp}/$prefix.XXXXXX")"
printf '%s' "$hostfile_lines" >"$tmp/hosts"
# Open MPI's rsh launcher runs `AGENT HOST COMMAND...` the way it would run
# ssh: the words joined, for the remote shell to parse.
cat >"$tmp/agent" <<EOF
#!/usr/bin/env bash
while [ "\${1:0:1}" = - ]; do shift; done
case "\$1" in
  10.231.0.*) ns="$prefix-\$((\${1##*.} - 1))" ;;
  *) echo "netns-mpi agent: unknown host '\$1'" >&2; exit 255 ;;
esac
shift
# Each "host" its own session directory: on separate hosts /tmp is not
# shared, here it is, and daemons creating their directories in one shared
# tree at the same moment now and then failed ("A call to mkdir was unable
# to create the desired directory ... File exists"). mpirun passes its own
# (orte_tmpdir_base, set below) to every daemon; this gives each its own.
from="$tmp/session/launcher" to="$tmp/session/\$ns"
mkdir -p "\$to" || exit 255
command="\${*//"\$from"/"\$to"}"
exec ip netns exec "\$ns" /bin/sh -c "\$command"
EOF
chmod +x "$tmp/agent"

# bytes NS COUNTER: the interface counter of eth0 in NS.
bytes() { ip netns exec "$1" cat "/sys/class/net/eth0/statistics/$2"; }
# mpi_bytes NS: the bytes NS sent on MPI connections (htb class 1:1).
mpi_bytes() {
  tc -n "$1" -s class show dev eth0 classid 1:1 | sed -n 's/^ *Sent \([0-9]*\) bytes.*/\1/p'
}
declare -a rx0 tx0
baseline() {
  for ((r = 0; r < ranks; r++)); do
    rx0[r]="$(bytes "$prefix-$r" rx_bytes)"
    tx0[r]="$(bytes "$prefix-$r" tx_bytes)"
  done
}

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Each daemon (orted) copies the host's hwloc topology into shared memory
# at a virtual address it picks in the "biggest" hole of its address space,
# for its ranks to map at the same address. Now and then (1 launch in 20
# at 4 ranks here) that write crashed the daemon before it called back
# (SIGSEGV in hwloc_alloc_setup_object under hwloc_shmem_topology_write,
# an address just below the stack): `rtc_hwloc_vmhole none` turns that
# sharing off, and each rank reads the topology itself (a few ms).
# hwloc's OpenCL and OpenGL plugins are not loaded either: MPI needs CPUs
# and memory from hwloc, and the OpenCL plugin would start every installed
# OpenCL driver (PoCL here, for the Halide tests, with its own LLVM) inside
# mpirun, each daemon and each rank.
export HWLOC_PLUGINS_BLACKLIST="${HWLOC_PLUGINS_BLACKLIST:-hwloc_opencl,hwloc_gl}"
# orte_leave_session_attached: the daemons stay children of their agent
# instead of daemonizing. Daemonized, one of four daemons now and then
# (about 1 launch in 7 at 4 ranks, Open MPI 4.1.4) vanished before it called
# back, and mpirun waited for it until --timeout, with no rank started and no
# message. Attached, a daemon that dies ends its agent, which mpirun reports,
# and the daemons' own errors reach this stderr (0 hangs in 125 launches).
launch() {
  mkdir -p "$tmp/session/launcher" || fail "cannot create $tmp/session/launcher"
  OMPI_MCA_orte_tmpdir_base="$tmp/session/launcher" \
  timeout "$timeout_s" ip netns exec "$prefix-0" mpirun -np "$ranks" --hostfile "$tmp/hosts" \
    --mca plm rsh --mca plm_rsh_agent "$tmp/agent" --mca plm_rsh_no_tree_spawn 1 \
    --mca orte_keep_fqdn_hostnames 1 --mca orte_leave_session_attached 1 \
    --mca rtc_hwloc_vmhole none \
    --mca oob tcp --mca oob_tcp_if_include "$subnet" \
    --mca pml ob1 --mca btl tcp,self --mca btl_tcp_if_include "$subnet" \
    --mca btl_tcp_port_min_v4 "$btl_port" --mca btl_tcp_port_range_v4 64 \
    --mca coll '^sm,han' --mca osc '^sm,ucx' \
    "$@" >"$tmp/out" 2>"$tmp/err"
}
# On a loaded machine (the test suite's other jobs beside it) a launch now
# and then fails before any rank computes: Open MPI reports that a process
# "was unable to complete a TCP connection" between two namespaces, or that
# a daemon "failed after launch and before communicating back to mpirun" or
# that it was "unable to reliably start one or more daemons" (no rank runs
# before every daemon has called back). That launch, and only
# those kinds of failure, is run once more; its output is dropped and the
# note below says so. A job whose ranks fail otherwise, or twice, fails.
baseline
launch "$@"
status=$?
if [ "$status" != 0 ] && [ "$status" != 124 ] &&
   grep -q -e "unable to complete a TCP connection" \
     -e "daemon has unexpectedly failed after launch and before" \
     -e "ORTE was unable to reliably start one or more daemons" \
     "$tmp/out" "$tmp/err"; then
  echo "netns-mpi: Open MPI could not start or connect the namespaces' daemons (exit $status); launching once more:" >&2
  cat "$tmp/out" "$tmp/err" | sed 's/^/netns-mpi: first launch: /' | head -n 20 >&2
  baseline
  launch "$@"
  status=$?
fi
cat "$tmp/out"
cat "$tmp/err" >&2
[ "$status" = 124 ] && echo "netns-mpi: the job ran past $timeout_s s (--timeout) and was stopped" >&2

total=0
mpi_total=0
for ((r = 0; r < ranks; r++)); do
  ns="$prefix-$r"
  rx=$(($(bytes "$ns" rx_bytes) - rx0[r]))
  tx=$(($(bytes "$ns" tx_bytes) - tx0[r]))
  total=$((total + tx))
  line="netns-mpi: rank $r ($ns, 10.231.0.$((r + 1))): veth sent $tx bytes, received $rx bytes"
  if [ "$counting" = 1 ]; then
    sent="$(mpi_bytes "$ns")"
    mpi_total=$((mpi_total + ${sent:-0}))
    line+=", of which MPI byte transfer layer sent ${sent:-0}"
  fi
  echo "$line" >&2
done
if [ "$counting" = 1 ]; then
  echo "netns-mpi: $ranks ranks: $total bytes over the veth links, $mpi_total of them MPI (TCP BTL, headers included)" >&2
else
  mpi_total=$total
  echo "netns-mpi: $ranks ranks: $total bytes over the veth links (htb/u32 unavailable: launcher traffic included)" >&2
fi
if [ "$status" = 0 ] && [ "$ranks" -gt 1 ] && [ "$mpi_total" -lt "$min_bytes" ]; then
  fail "only $mpi_total MPI bytes crossed the veth links, expected at least $min_bytes (what the collectives must move): the ranks did not talk over the veth links"
fi
exit "$status"
