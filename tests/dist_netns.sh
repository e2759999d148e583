#!/usr/bin/env bash
# Faults between two hosts: t2sda_train on 2 ranks, one per "host", stops within 60 s
# naming the rank or the node, and never hangs.
#
#   tests/dist_netns.sh BIN_DIR SOURCE_DIR        (ctest: test_dist_netns, labels dist fault)
#
# The two hosts are network namespaces t2s-a (10.77.0.1) and t2s-b (10.77.0.2) joined by
# a veth pair; each process started in one also gets its own UTS namespace whose host
# name is the host's, as on real machines, so gethostname() and Open MPI's node names
# agree. mpirun runs on t2s-a and starts the daemon on t2s-b through a small rsh agent
# (`ip netns exec`) instead of ssh; Open MPI's control (oob) and data (btl tcp) traffic
# both go over the veth link. Four runs, one fault each, injected once training runs:
#   kill       kill -9 of rank 1's t2sda_train: mpirun notices the exit and names the rank;
#   link       t2s-b's end of the link goes down: nothing fails, the peers just go silent,
#              so the collective deadline (dist.timeout, short here) fires on rank 0,
#              which names "rank 1 (host t2s-b)" and aborts the job;
#   node       every process of t2s-b is killed (the daemon too): mpirun loses the daemon,
#              and rank 0's Open MPI names the peer host that hung up;
#   keepalive  the link goes down under a long deadline: Open MPI's TCP keepalive (short
#              here, 2 min in the launch templates) gives the daemon up and names the node.
# Each run must end within 60 s of the fault, with a non-zero exit status and a message
# naming the rank or host; `timeout` guards every wait, so a hang fails the test.
# T2S_NETNS_KEEP=1 keeps the job logs (their folder is printed).
# Exit 77 (skipped) when this machine refuses namespaces or veth pairs (not root, no
# CAP_NET_ADMIN, no iproute2 / unshare / mpirun).
set -uo pipefail
bin=${1:?usage: $0 BIN_DIR SOURCE_DIR}
src=${2:?usage: $0 BIN_DIR SOURCE_DIR}
limit=60          # seconds from the fault to the end of the job
# Per run: dist.timeout, and Open MPI's TCP keepalive on its control connections
# (idle seconds, then probes x interval; Open MPI's default is 300 s + 9 x 20 s, the
# launch templates set 60 s + 6 x 10 s). The idle time counts from the last control
# message, which can be well before the fault, so the keepalive of most runs (30 s +
# 3 x 2 s) is kept far above the deadline (10 s, plus 2 s of grace) for the link run's
# collective deadline to speak first and name the rank. The keepalive run turns that
# around, as the templates do (600 s deadline, 2 min keepalive): there mpirun notices
# the silent daemon first and names the node.
deadline=10
keepalive=(30 2 3)

skip() { echo "test_dist_netns: skipped: $*" >&2; exit 77; }
for tool in ip unshare mpirun timeout; do
  command -v $tool > /dev/null 2>&1 || skip "$tool not found (tools/setup.sh installs iproute2, util-linux, openmpi-bin)"
done
[ "$(id -u)" = 0 ] || skip "network namespaces need root (this is uid $(id -u))"

id=$$
nsa=t2s-a-$id nsb=t2s-b-$id
veth_a=t2sa$id veth_b=t2sb$id     # interface names: 15 characters at most
tmp=$(mktemp -d /tmp/t2s_netns_XXXXXX)
failures=0

# Between the runs: kills whatever still runs in the namespaces (a failed run may leave
# ranks behind) and brings the link back up. At the end the namespaces go too; deleting
# a namespace deletes its end of the veth pair, and the pair with it.
stop_all() {
  for ns in "$nsa" "$nsb"; do
    pids=$(ip netns pids "$ns" 2> /dev/null)
    [ -n "$pids" ] && kill -9 $pids 2> /dev/null
  done
  ip -n "$nsb" link set "$veth_b" up 2> /dev/null
  return 0
}
cleanup() {
  stop_all
  sleep 0.2
  ip netns del "$nsa" 2> /dev/null
  ip netns del "$nsb" 2> /dev/null
  if [ -n "${T2S_NETNS_KEEP:-}" ]; then echo "test_dist_netns: the logs are in $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ip netns add "$nsa" 2> "$tmp/err" && ip netns add "$nsb" 2>> "$tmp/err" ||
  skip "ip netns add refused: $(cat "$tmp/err")"
ip link add "$veth_a" type veth peer name "$veth_b" 2> "$tmp/err" ||
  skip "ip link add type veth refused: $(cat "$tmp/err")"
ip link set "$veth_a" netns "$nsa" && ip link set "$veth_b" netns "$nsb" &&
  ip -n "$nsa" addr add 10.77.0.1/24 dev "$veth_a" && ip -n "$nsb" addr add 10.77.0.2/24 dev "$veth_b" &&
  ip -n "$nsa" link set lo up && ip -n "$nsb" link set lo up &&
  ip -n "$nsa" link set "$veth_a" up && ip -n "$nsb" link set "$veth_b" up || {
  echo "test_dist_netns: could not configure the veth pair" >&2
  exit 1
}
unshare --uts true 2> "$tmp/err" || skip "unshare --uts refused: $(cat "$tmp/err")"
# After the link drops and rank 0 aborts, mpirun sends the stop order to t2s-b's daemon
# and waits for it; unacknowledged data is not covered by keepalive, so the kernel's
# retransmission limit decides when mpirun gives the daemon up: tcp_retries2 = 15
# (Linux's default) is about 15 minutes, 6 about 25 s (docs/distributed.md, "Failures").
# 6 and not less: the ranks' own data connection must outlast the deadline + grace, or
# Open MPI, not the deadline, reports the silent peer. Per namespace: the machine's
# setting is untouched.
for ns in "$nsa" "$nsb"; do
  ip netns exec "$ns" sysctl -qw net.ipv4.tcp_retries2=6 2> "$tmp/err" ||
    skip "setting net.ipv4.tcp_retries2 in a namespace refused: $(cat "$tmp/err")"
done

# The rsh agent Open MPI calls as `agent HOST COMMAND...`, as it would call ssh: the
# command runs in HOST's namespaces. Like an ssh client, the agent itself stays on the
# launching host (it survives the node), and when the remote side ends abnormally it
# exits with that status and says so naming the host, as ssh does ("Connection closed
# by ..."): when mpirun sees that exit first, it says only that a daemon failed.
cat > "$tmp/agent" << EOF
#!/bin/sh
host=\$1
shift
case \$host in
  t2s-a) ns=$nsa ;;
  t2s-b) ns=$nsb ;;
  *) echo "t2s netns agent: unknown host \$host" >&2; exit 1 ;;
esac
ip netns exec "\$ns" unshare --uts /bin/sh -c 'hostname "\$1" && exec /bin/sh -c "\$2"' sh "\$host" "\$*"
rc=\$?
[ \$rc = 0 ] || echo "t2s netns agent: connection to \$host closed (remote status \$rc)" >&2
exit \$rc
EOF
chmod +x "$tmp/agent"
printf 't2s-a slots=1\nt2s-b slots=1\n' > "$tmp/hosts"

"$bin/t2sda_synth" "$tmp/data" --source 12 --target 12 --val 2 --size 48 48 --seed 6 > /dev/null ||
  { echo "test_dist_netns: t2sda_synth failed" >&2; exit 1; }
train_args=("$src/configs/synthetic_t2sda.yaml" --quiet device=cpu
  "data.source.shards=$tmp/data/source-*.h5" "data.target.shards=$tmp/data/target-*.h5"
  "data.val.shards=$tmp/data/val-*.h5" model.num_classes=11 data.crop=[32,32]
  data.workers_per_gpu=1 data.samples_per_gpu=1 model.backbone.depth=18 model.backbone.base_channels=4
  model.backbone.stem_channels=8 uda.t2s.proj_dim=16 uda.t2s.num_queries=16 uda.t2s.num_negatives=8
  data.rare_class_sampling.min_pixels=100 evaluation.interval=0 log.interval=1 checkpoint.interval=0
  runner.max_iters=100000)

now() { date +%s.%N; }

# said 'TEXT1|TEXT2' LOG: the log holds one of the texts (fixed strings)
said() {
  local alt text
  IFS='|' read -ra alt <<< "$1"
  for text in "${alt[@]}"; do grep -qF -- "$text" "$2" && return 0; done
  return 1
}

# run_case NAME FAULT_COMMAND PATTERN...: starts the job, waits for iteration 3, injects
# the fault, and checks the end of the job.
run_case() {
  local name=$1 fault=$2
  shift 2
  local log="$tmp/$name.log" wd="$tmp/work_$name"
  timeout -s KILL 600 ip netns exec "$nsa" unshare --uts /bin/sh -c 'hostname t2s-a && exec "$@"' sh \
    env OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
    mpirun -np 2 --hostfile "$tmp/hosts" --map-by node --bind-to none --allow-run-as-root \
    --mca plm_rsh_agent "$tmp/agent" --mca btl tcp,self \
    --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24 \
    --mca oob_tcp_keepalive_time ${keepalive[0]} --mca oob_tcp_keepalive_intvl ${keepalive[1]} \
    --mca oob_tcp_keepalive_probes ${keepalive[2]} -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS \
    "$bin/t2sda_train" "${train_args[@]}" work_dir="$wd" dist.timeout=$deadline > "$log" 2>&1 &
  local job=$!
  local i
  for ((i = 0; i < 900; i++)); do   # 90 s: 4 x (90 + 60) s stays within ctest's 900 s
    grep -q '"iteration": 3,' "$wd/metrics.jsonl" 2> /dev/null && break
    kill -0 $job 2> /dev/null || break
    sleep 0.1
  done
  if ! grep -q '"iteration": 3,' "$wd/metrics.jsonl" 2> /dev/null; then
    echo "test_dist_netns: $name: the 2-host job never reached iteration 3; its output:" >&2
    cat "$log" >&2
    kill -9 $job 2> /dev/null
    stop_all
    failures=$((failures + 1))
    return
  fi
  local t0 t1 rc=0 stopped=0
  t0=$(now)
  eval "$fault"
  for ((i = 0; i < limit * 10; i++)); do
    kill -0 $job 2> /dev/null || { stopped=1; break; }
    sleep 0.1
  done
  t1=$(now)
  if [ $stopped = 0 ]; then
    echo "test_dist_netns: $name: FAILED: the job still runs $limit s after the fault; its output:" >&2
    cat "$log" >&2
    kill -9 $job 2> /dev/null
    stop_all
    wait $job 2> /dev/null
    failures=$((failures + 1))
    return
  fi
  wait $job
  rc=$?
  local took ok=1 p
  took=$(awk "BEGIN { print $t1 - $t0 }")
  [ $rc != 0 ] || { echo "test_dist_netns: $name: FAILED: the job exited 0 after the fault" >&2; ok=0; }
  for p in "$@"; do
    said "$p" "$log" || { echo "test_dist_netns: $name: FAILED: the output does not say \"$p\"" >&2; ok=0; }
  done
  printf 'test_dist_netns: %-9s stopped %.1f s after the fault, exit status %d\n' "$name" "$took" $rc
  if [ $ok = 0 ]; then
    echo "--- output of the $name run ---" >&2
    cat "$log" >&2
    failures=$((failures + 1))
  fi
  grep -E "rank 1|t2s-b|noticed|lost" "$log" | head -4 | sed "s/^/    $name| /"
  stop_all
}

# rank 1's t2sda_train, by its command name among t2s-b's processes
rank1_pid() {
  local p
  for p in $(ip netns pids "$nsb"); do
    [ "$(cat /proc/$p/comm 2> /dev/null)" = t2sda_train ] && echo $p
  done
}

# What names the fault: mpirun's notice of the killed rank; our collective deadline on
# rank 0; for the lost node, whichever comes first: mpirun's "lost communication with a
# remote daemon ... on node t2s-b", rank 0's "Peer host: t2s-b" (Open MPI's note that its
# peer hung up), or, when mpirun sees the agent (ssh) end first and says only that a
# daemon failed, the agent's line naming the host;
# for the silent link with a long deadline, mpirun's keepalive verdict on the daemon.
run_case kill 'kill -9 $(rank1_pid)' "process rank 1 with PID" "on node t2s-b exited on signal 9"
run_case link 'ip -n "$nsb" link set "$veth_b" down' "rank 1 (host t2s-b) never reached it" \
  "did not complete within $deadline s"
run_case node 'kill -9 $(ip netns pids "$nsb")' "on node t2s-b|Peer host:  t2s-b|connection to t2s-b closed"
deadline=300
keepalive=(3 1 3)
run_case keepalive 'ip -n "$nsb" link set "$veth_b" down' "lost communication with a remote daemon" \
  "on node t2s-b"

if [ $failures -gt 0 ]; then
  echo "test_dist_netns: $failures of 4 fault runs failed" >&2
  exit 1
fi
echo "test_dist_netns: passed"
