#!/usr/bin/env bash
# lulld's footprint next to Debian's collectd, in the same run, on the same
# broker: CPU (% of one core) and memory (RSS, and private memory, which is
# what a process really costs when libraries are shared) with every collector
# at a 2 s interval.
#
#   bench/footprint.sh [build-dir] [seconds]     (defaults: build, 120)
#   cmake --build build --target footprint       (60 s)
#
# collectd loads cpu, memory, df, interface, load, swap, uptime, thermal,
# processes and mqtt at Interval 2. lulld runs every collector (host, process,
# worker registry, bus stats) plus the quiet assessor and HA discovery
# (LULL_BENCH_ROLES, default collectors,assessor; "all" adds the lease
# manager, queue and SQLite persister) at --interval 2s and
# --collectors-process-interval 2s, watching mosquitto as collectd's processes
# plugin does. Prints figures and ratios; never fails (a benchmark is not a
# test).

set -u
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:-$here/../build}"
secs="${2:-120}"
warmup=6
lulld="$build/src/lulld"
work="$(mktemp -d /tmp/lull-footprint-XXXXXX)"
pids=()

cleanup() {
  # lulld publishes offline and disconnects within 1.5 s of SIGTERM.
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for _ in $(seq 30); do
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
  say "footprint: no lulld at $lulld (build first); nothing measured"
  exit 0
fi
collectd_bin="$(command -v collectd || echo /usr/sbin/collectd)"
plugin_dir=/usr/lib/collectd

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cat > "$work/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
persistence false
CONF
mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
broker_pid=$!
pids+=("$broker_pid")
for _ in $(seq 50); do
  (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
  sleep 0.1
done

have_collectd=0
if [ -x "$collectd_bin" ] && [ -f "$plugin_dir/mqtt.so" ]; then
  cat > "$work/collectd.conf" <<CONF
Hostname "bench"
FQDNLookup false
Interval 2
PluginDir "$plugin_dir"
TypesDB "/usr/share/collectd/types.db"
BaseDir "$work/collectd"
PIDFile "$work/collectd.pid"
LoadPlugin logfile
<Plugin logfile>
  LogLevel warning
  File STDERR
</Plugin>
LoadPlugin cpu
LoadPlugin memory
LoadPlugin df
LoadPlugin interface
LoadPlugin load
LoadPlugin swap
LoadPlugin uptime
LoadPlugin thermal
LoadPlugin processes
<Plugin processes>
  Process "mosquitto"
  Process "lulld"
</Plugin>
LoadPlugin mqtt
<Plugin mqtt>
  <Publish "bench">
    Host "127.0.0.1"
    Port $port
    ClientId "collectd-bench"
    Prefix "collectd"
  </Publish>
</Plugin>
CONF
  mkdir -p "$work/collectd"
  "$collectd_bin" -f -C "$work/collectd.conf" >"$work/collectd.log" 2>&1 &
  collectd_pid=$!
  pids+=("$collectd_pid")
  have_collectd=1
else
  say "footprint: collectd or its mqtt plugin is missing; measuring lulld alone"
fi

roles="${LULL_BENCH_ROLES:-collectors,assessor}"
LULL_LOG_LEVEL=warn "$lulld" --broker "tcp://127.0.0.1:$port" --host-id bench --roles "$roles" \
  --data-dir "$work/lull" --interval 2s --collectors-process-interval 2s \
  --collectors-processes mosquitto >"$work/lulld.log" 2>&1 &
lulld_pid=$!
pids+=("$lulld_pid")

# Count what each publishes over the measured window.
sleep "$warmup"
timeout "$secs" mosquitto_sub -p "$port" -t 'collectd/#' >"$work/collectd.msgs" 2>/dev/null &
timeout "$secs" mosquitto_sub -p "$port" -t 'stats/#' -t 'homeassistant/#' -t 'lull/#' \
  >"$work/lulld.msgs" 2>/dev/null &

ticks() { # utime + stime of a pid, in clock ticks
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null
}
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
hz="$(getconf CLK_TCK)"

t0="$(date +%s.%N)"
l0="$(ticks "$lulld_pid")"
c0=""; [ "$have_collectd" = 1 ] && c0="$(ticks "$collectd_pid")"
sleep "$secs"
t1="$(date +%s.%N)"
l1="$(ticks "$lulld_pid")"
c1=""; [ "$have_collectd" = 1 ] && c1="$(ticks "$collectd_pid")"

cpu_pct() { # ticks-before ticks-after
  [ -n "$1" ] && [ -n "$2" ] || { echo "n/a"; return; }
  awk -v a="$1" -v b="$2" -v t0="$t0" -v t1="$t1" -v hz="$hz" \
    'BEGIN { printf "%.3f", 100 * (b - a) / hz / (t1 - t0) }'
}
kb() { # field of /proc/<pid>/status or smaps_rollup, in kB
  awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/$3" 2>/dev/null
}
private_kb() {
  awk '$1 == "Private_Clean:" || $1 == "Private_Dirty:" { s += $2 } END { print s + 0 }' \
    "/proc/$1/smaps_rollup" 2>/dev/null
}
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || b + 0 == 0) print "n/a";
                                   else printf "%.2fx", a / b }'
}

lcpu="$(cpu_pct "$l0" "$l1")"; ccpu="$(cpu_pct "$c0" "$c1")"
lrss="n/a"; crss="n/a"; lpriv="n/a"; cpriv="n/a"; lpss="n/a"; cpss="n/a"; lanon="n/a"; canon="n/a"
if alive "$lulld_pid"; then
  lrss="$(kb "$lulld_pid" VmRSS status)"; lpriv="$(private_kb "$lulld_pid")"
  lpss="$(kb "$lulld_pid" Pss smaps_rollup)"; lanon="$(kb "$lulld_pid" RssAnon status)"
fi
if [ "$have_collectd" = 1 ] && alive "$collectd_pid"; then
  crss="$(kb "$collectd_pid" VmRSS status)"; cpriv="$(private_kb "$collectd_pid")"
  cpss="$(kb "$collectd_pid" Pss smaps_rollup)"; canon="$(kb "$collectd_pid" RssAnon status)"
fi
sleep 0.5
lmsgs="$(wc -l <"$work/lulld.msgs" 2>/dev/null || echo 0)"
cmsgs="$(wc -l <"$work/collectd.msgs" 2>/dev/null || echo 0)"

say "footprint over ${secs}s at a 2 s interval ($(nproc) cores, $(uname -m)); lulld roles: $roles"
printf '%-10s %10s %8s %8s %8s %8s %8s\n' "" "CPU %core" "RSS kB" "PSS kB" "priv kB" "anon kB" "msgs/2s"
per2() { awk -v n="$1" -v s="$secs" 'BEGIN { printf "%.1f", n * 2 / s }'; }
printf '%-10s %10s %8s %8s %8s %8s %8s\n' lulld "$lcpu" "$lrss" "$lpss" "$lpriv" "$lanon" "$(per2 "$lmsgs")"
printf '%-10s %10s %8s %8s %8s %8s %8s\n' collectd "$ccpu" "$crss" "$cpss" "$cpriv" "$canon" "$(per2 "$cmsgs")"
say "ratio lulld/collectd: CPU $(ratio "$lcpu" "$ccpu") (target <= 0.5x), RSS $(ratio "$lrss" "$crss") (target <= 2x), PSS $(ratio "$lpss" "$cpss"), anon $(ratio "$lanon" "$canon")"
say "(RSS counts shared library pages; anon is the heap and stacks the process itself dirtied)"
if ! alive "$lulld_pid"; then say "note: lulld exited early:"; tail -5 "$work/lulld.log"; fi
if [ "$have_collectd" = 1 ] && ! alive "$collectd_pid"; then
  say "note: collectd exited early:"; tail -5 "$work/collectd.log"
fi
exit 0
