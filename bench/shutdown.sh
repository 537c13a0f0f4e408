#!/usr/bin/env bash
# How long lulld takes from SIGTERM to exit with a large queue and a
# publishing flood, and whether every acknowledged job is still there:
#
#   bench/shutdown.sh [build-dir] [jobs] [flood-seconds]   (defaults: build 30000 3)
#
# Starts its own Mosquitto and one lulld (roles all) on a fresh data
# directory, queues <jobs> jobs that no host runs (100 submitted with
# bench/mqttjs/lull-load.js submit, every one acknowledged, then copied in
# SQLite and restored by a restarted lulld), starts a flood of further submits
# (lull-load.js flood: as fast as the broker takes them, without waiting for
# replies), lets it run <flood-seconds>, sends lulld SIGTERM and prints:
#   - SIGTERM to `offline` on lulld's availability topic, and to exit;
#   - lulld's exit status and its shutdown log lines;
#   - the jobs in the database against the acknowledged ones (every job
#     lulld acknowledged must be there; missing ones are printed);
#   - lulld's restart: the jobs it restores, and its SIGTERM-to-exit idle.
# Goal (issue 11): SIGTERM to exit within 2 s whatever the queue holds.
# Prints figures; exits 1 only if an acknowledged job is missing. Needs
# Node.js and npm (installs MQTT.js into bench/mqttjs/node_modules on first
# use), sqlite3 and mosquitto. Takes about 10-30 s with 30,000 jobs on 2
# cores (a lulld that drains its mailboxes first: minutes, at most 300 s).

set -u
here="$(cd "$(dirname "$0")" && pwd)"
build="$(cd "${1:-$here/../build}" && pwd)"
jobs="${2:-30000}"
flood_secs="${3:-3}"
lulld="$build/src/lulld"
work="$(mktemp -d /tmp/lull-shutdown-XXXXXX)"
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for _ in $(seq 100); do
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
now() { date +%s.%N; }
ms_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.0f", (b - a) * 1000 }'; }

if [ ! -x "$lulld" ]; then
  say "shutdown: no lulld at $lulld (build first); nothing measured"
  exit 0
fi
for tool in node npm sqlite3 mosquitto mosquitto_sub; do
  command -v "$tool" >/dev/null || { say "shutdown: needs $tool; nothing measured"; exit 0; }
done
if [ ! -d "$here/mqttjs/node_modules/mqtt" ]; then
  (cd "$here/mqttjs" && npm install --no-audit --no-fund --silent) \
    || { say "shutdown: npm install failed; nothing measured"; exit 0; }
fi

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cat > "$work/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
persistence false
set_tcp_nodelay true
max_queued_messages 1000000
max_inflight_messages 0
CONF
mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
pids+=("$!")
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
broker="mqtt://127.0.0.1:$port"

start_lulld() { # $1: log file
  "$lulld" --broker "tcp://127.0.0.1:$port" --host-id shutdown-bench --roles all \
    --data-dir "$work/data" --log-level "${LULL_BENCH_LOG_LEVEL:-info}" ${LULL_BENCH_LULLD_ARGS:-} >"$1" 2>&1 &
  lulld_pid=$!
  pids+=("$lulld_pid")
}
wait_log() { # $1: file, $2: pattern, $3: seconds
  local t0=$SECONDS
  until grep -q "$2" "$1" 2>/dev/null; do
    (( SECONDS - t0 > $3 )) && return 1
    kill -0 "$lulld_pid" 2>/dev/null || return 1
    sleep 0.05
  done
}
# SIGTERM to exit in ms, and the exit status in $exit_status.
term_and_time() {
  local t0
  t0=$(now)
  kill -TERM "$lulld_pid"
  local ok=0 t_start=$SECONDS
  while (( SECONDS - t_start < 300 )); do
    kill -0 "$lulld_pid" 2>/dev/null || { ok=1; break; }
    sleep 0.01
  done
  took_ms=$(ms_since "$t0")
  if [ "$ok" = 1 ]; then
    wait "$lulld_pid"; exit_status=$?
  else
    exit_status="still running after 300 s (killed)"
    kill -9 "$lulld_pid" 2>/dev/null
  fi
}

# The queue: 100 jobs submitted over MQTT (each acknowledged), then copied
# in SQLite to <jobs> (submitting 30,000 one by one takes minutes: each
# submit scans the whole queue), and lulld restarted on them.
start_lulld "$work/lulld0.log"
wait_log "$work/lulld0.log" 'mqtt bridge: connected' 30 \
  || { say "shutdown: lulld did not connect:"; tail -5 "$work/lulld0.log"; exit 1; }
wait_log "$work/lulld0.log" 'queue dispatcher: restored' 30 || true
node "$here/mqttjs/lull-load.js" submit --broker "$broker" --jobs 100 --window 20 \
  --acked "$work/acked" >"$work/submit.json" 2>"$work/submit.log" \
  || { say "shutdown: submitting failed:"; tail -3 "$work/submit.log"; exit 1; }
term_and_time
copies=$(( (jobs + 99) / 100 - 1 ))
sqlite3 "$work/data/lull.db" "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $copies)
  INSERT INTO jobs(job_id, state, updated_at, record)
  SELECT job_id || '-' || i, state, updated_at,
         json_set(record, '\$.job_id', job_id || '-' || i,
                  '\$.idempotency_key', json_extract(record, '\$.idempotency_key') || '-' || i,
                  '\$.seq', json_extract(record, '\$.seq') + 1000 * i)
  FROM jobs, n WHERE $copies > 0;" || { say "shutdown: cannot copy jobs in SQLite"; exit 1; }
queued=$(sqlite3 "$work/data/lull.db" "select count(*) from jobs where state = 'queued'")

start_lulld "$work/lulld.log"
wait_log "$work/lulld.log" 'queue dispatcher: restored' 60 \
  || { say "shutdown: lulld did not restore its queue:"; tail -5 "$work/lulld.log"; exit 1; }
wait_log "$work/lulld.log" 'mqtt bridge: connected' 30 \
  || { say "shutdown: lulld did not connect:"; tail -5 "$work/lulld.log"; exit 1; }
say "shutdown: lulld $lulld, $queued queued jobs ($(grep -o 'restored [0-9]* jobs' "$work/lulld.log")), a submit flood for ${flood_secs} s, then SIGTERM"

# Availability: when `offline` goes out after SIGTERM.
mosquitto_sub -h 127.0.0.1 -p "$port" -t 'lull/shutdown-bench/availability' \
  -v -F '%U %p' >"$work/availability" 2>/dev/null &
pids+=("$!")

node "$here/mqttjs/lull-load.js" flood --broker "$broker" --seconds 600 --window 2000 \
  --acked "$work/acked" >"$work/flood.json" 2>"$work/flood.log" &
flood_pid=$!
pids+=("$flood_pid")
t_flood=$SECONDS
cpu0=$(awk '{print $14 + $15}' "/proc/$lulld_pid/stat")
while (( SECONDS - t_flood < flood_secs )); do sleep 0.1; done
cpu1=$(awk '{print $14 + $15}' "/proc/$lulld_pid/stat")
say "  lulld's CPU during the flood: $(awk -v a="$cpu0" -v b="$cpu1" -v hz="$(getconf CLK_TCK)" -v s="$flood_secs" \
  'BEGIN { printf "%.0f", 100 * (b - a) / hz / s }') % of one core"

t_term=$(now)
term_and_time
say "  SIGTERM -> exit: ${took_ms} ms (status $exit_status)"
off=$(awk '$2 == "offline" { print $1; exit }' "$work/availability")
if [ -n "$off" ]; then
  say "  SIGTERM -> offline: $(awk -v a="$t_term" -v b="$off" 'BEGIN { printf "%.0f", (b - a) * 1000 }') ms"
else
  say "  SIGTERM -> offline: not seen"
fi
kill -TERM "$flood_pid" 2>/dev/null
wait "$flood_pid" 2>/dev/null
say "  flood: $(cat "$work/flood.json" 2>/dev/null)"
grep -E 'shutting down|stopped in|exiting|still busy|did not confirm|disconnected|disconnecting|down after|finished after' "$work/lulld.log" | sed 's/^/  lulld: /'

# Every acknowledged job is in the database.
acked=$(sort -u "$work/acked" | wc -l)
sort -u "$work/acked" >"$work/acked.sorted"
sqlite3 "$work/data/lull.db" 'select job_id from jobs' | sort -u >"$work/stored"
stored=$(wc -l <"$work/stored")
missing=$(comm -23 "$work/acked.sorted" "$work/stored" | wc -l)
say "  jobs: $acked acknowledged, $stored in the database, $missing acknowledged but missing"
comm -23 "$work/acked.sorted" "$work/stored" | head -5 | sed 's/^/    missing: /'

start_lulld "$work/lulld2.log"
if wait_log "$work/lulld2.log" 'queue dispatcher: restored' 60; then
  say "  restart: $(grep -o 'restored [0-9]* jobs' "$work/lulld2.log")"
  wait_log "$work/lulld2.log" 'mqtt bridge: connected' 30 || true
  term_and_time
  say "  restarted lulld idle with the same queue: SIGTERM -> exit ${took_ms} ms (status $exit_status)"
else
  say "  restart: lulld did not restore its queue:"; tail -5 "$work/lulld2.log"
fi
[ "$missing" = 0 ]
