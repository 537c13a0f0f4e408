#!/usr/bin/env bash
# A fleet-scale soak of one scheduling lulld (roles all: collectors, assessor,
# scheduler, queue, SQLite persister) on its own Mosquitto:
#
#   bench/soak.sh [build-dir] [seconds] [hosts] [workers]   (defaults: build 600 100 1000)
#
# The generator (bench/mqttjs/lull-load.js soak, MQTT.js, not Paho) makes
# <hosts> simulated hosts publish snapshots every 2 s and <workers> workers
# hold 60 s leases, heartbeat every 5 s, and release and ask again after
# 30-90 s. The script samples lulld every 10 s and prints its CPU (% of one
# core), RSS over time, the generator's reply latencies (p50/p99) and the
# database's growth per day. Goals on a 2-core machine: < 25 % of one core,
# RSS flat after warm-up, reply p99 < 20 ms. Alongside, a bare echo client in
# the generator answers ten requests a second over the same broker and load:
# the latency lulld's replies would have without lulld. Prints figures; never fails (a
# benchmark is not a test). Needs Node.js and npm (installs MQTT.js into
# bench/mqttjs/node_modules on first use).

set -u
here="$(cd "$(dirname "$0")" && pwd)"
build="$(cd "${1:-$here/../build}" && pwd)"
secs="${2:-600}"
hosts="${3:-100}"
workers="${4:-1000}"
lulld="$build/src/lulld"
work="$(mktemp -d /tmp/lull-soak-XXXXXX)"
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for _ in $(seq 50); do
    local left=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && left=1; done
    [ "$left" = 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
say() { printf '%s\n' "$*"; }

if [ ! -x "$lulld" ]; then
  say "soak: no lulld at $lulld (build first); nothing measured"
  exit 0
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  say "soak: needs node and npm (apt-get install nodejs npm); nothing measured"
  exit 0
fi
if [ ! -d "$here/mqttjs/node_modules/mqtt" ]; then
  (cd "$here/mqttjs" && npm install --no-audit --no-fund --silent) \
    || { say "soak: npm install failed; nothing measured"; exit 0; }
fi

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cat > "$work/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
persistence false
set_tcp_nodelay true
max_queued_messages 100000
max_inflight_messages 0
CONF
mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
pids+=("$!")
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

# Room for the fleet: every simulated host and worker, and grants as fast as
# the generator asks.
"$lulld" --broker "tcp://127.0.0.1:$port" --host-id soak-agent --roles all \
  --data-dir "$work/data" --log-level warn \
  --lease-max-global 5000 --lease-max-per-worker 4 --lease-grant-rate 10000 --lease-grant-burst 10000 \
  --limits-max-hosts 1000 --limits-max-workers 10000 \
  >"$work/lulld.log" 2>&1 &
lulld_pid=$!
pids+=("$lulld_pid")

hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$lulld_pid/stat" 2>/dev/null || echo 0; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$lulld_pid/status" 2>/dev/null || echo 0; }
db_bytes() {
  # lulld holds the database exclusively while it runs: the file's size (its
  # pages, free ones included, not yet the WAL's).
  stat -c %s "$work/data/lull.db" 2>/dev/null || echo 0
}

node "$here/mqttjs/lull-load.js" soak --broker "mqtt://127.0.0.1:$port" --seconds "$secs" \
  --hosts "$hosts" --workers "$workers" --template soak-agent --report 60 --warmup 60 \
  >"$work/result.json" 2>"$work/generator.log" &
gen_pid=$!
pids+=("$gen_pid")

# Warm-up ends when the workers start (the hosts are QUIET), plus 60 s.
t_start=$SECONDS
until grep -q 'starting' "$work/generator.log" 2>/dev/null; do
  kill -0 "$gen_pid" 2>/dev/null || break
  (( SECONDS - t_start > 240 )) && break
  sleep 1
done
say "soak: $hosts hosts, $workers workers, ${secs} s (60 s of warm-up) against lulld $lulld (broker port $port)"
grep 'QUIET after' "$work/generator.log" | sed 's/^/  /'
sleep 60
c0=$(cpu_ticks); t0=$(date +%s.%N); d0=$(db_bytes)
rss_series=()
say "  time_s  lulld_cpu_%_of_core  rss_MB  db_live_MB"
last_c=$c0; last_t=$t0
while kill -0 "$gen_pid" 2>/dev/null; do
  sleep 10
  kill -0 "$lulld_pid" 2>/dev/null || { say "soak: lulld exited:"; tail -5 "$work/lulld.log"; break; }
  c=$(cpu_ticks); t=$(date +%s.%N); r=$(rss_kb); d=$(db_bytes)
  rss_series+=("$r")
  awk -v c="$c" -v lc="$last_c" -v t="$t" -v lt="$last_t" -v t0="$t0" -v hz="$hz" -v r="$r" -v d="$d" \
    'BEGIN { printf "  %6.0f  %19.1f  %6.1f  %10.2f\n", t - t0, 100 * (c - lc) / hz / (t - lt), r / 1024, d / 1048576 }'
  last_c=$c; last_t=$t
done
c1=$(cpu_ticks); t1=$(date +%s.%N); d1=$(db_bytes)
wait "$gen_pid" 2>/dev/null

say ""
say "soak: results (after a 60 s warm-up)"
awk -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v hz="$hz" \
  'BEGIN { printf "  lulld CPU: %.1f %% of one core (goal < 25 %%)\n", 100 * (c1 - c0) / hz / (t1 - t0) }'
if [ "${#rss_series[@]}" -ge 2 ]; then
  n=${#rss_series[@]}
  first=${rss_series[0]}; last=${rss_series[$((n - 1))]}
  max=$(printf '%s\n' "${rss_series[@]}" | sort -n | tail -1)
  awk -v f="$first" -v l="$last" -v m="$max" \
    'BEGIN { printf "  lulld RSS: %.1f MB at the start, %.1f MB at the end, %.1f MB at most (goal: flat)\n", f/1024, l/1024, m/1024 }'
fi
awk -v d0="$d0" -v d1="$d1" -v t0="$t0" -v t1="$t1" \
  'BEGIN { printf "  database: %.2f MB -> %.2f MB, %.0f MB per day at this rate\n", d0/1048576, d1/1048576, (d1 - d0) / 1048576 * 86400 / (t1 - t0) }'
if [ -s "$work/result.json" ]; then
  python3 - "$work/result.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"  generator: {r['requests_per_sec']} requests/s; grants {r['grants']}, denies {r['denies']}, "
      f"heartbeats {r['heartbeats']}, releases {r['releases']}, timeouts {r['timeouts']}, leases lost {r['lost']}")
for k in ("replies", "grant", "heartbeat", "release", "echo"):
    s = r[k]
    print(f"  {k:9s} p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms, max {s['max_ms']} ms (n={s['n']})")
e, q = r["echo"], r["replies"]
if e["p50_ms"] and e["p99_ms"]:
    print(f"  baseline: a bare echo over the same broker, generator and load (no lulld); "
          f"replies/echo p50 {q['p50_ms'] / e['p50_ms']:.2f}x, p99 {q['p99_ms'] / e['p99_ms']:.2f}x")
print(f"  reply p99 goal < 20 ms: {'met' if (q['p99_ms'] or 1e9) < 20 else 'not met'}")
PY
else
  say "  generator produced no result:"; tail -5 "$work/generator.log" | sed 's/^/  /'
fi
exit 0
