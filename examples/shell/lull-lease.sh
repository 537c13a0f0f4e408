#!/bin/sh
# A lease around a command with the Mosquitto clients only (mosquitto_rr and
# mosquitto_pub): ask lulld for a lease, retry when denied, run the command,
# heartbeat while it runs, stop it when the lease is lost, release with an
# outcome. docs/workers.md walks through the protocol.
#
#   lull-lease.sh [-h HOST] [-p PORT] [-w WORKER] [-c CLASS] [-u USER -P PASS] -- CMD ARGS...
#
# Exit status: CMD's own; 69 when lulld does not answer. MQTT v5 is needed
# (mosquitto_rr uses the response topic), so this is the open topic layout;
# with lull's secure broker config use scheduler/<worker>/lease/... (see
# docs/security.md).
set -u

host=127.0.0.1 port=1883 worker=$(hostname | cut -d. -f1) class=NORMAL auth=""
while getopts h:p:w:c:u:P: opt; do
  case $opt in
    h) host=$OPTARG ;;
    p) port=$OPTARG ;;
    w) worker=$OPTARG ;;
    c) class=$OPTARG ;;
    u) auth="$auth -u $OPTARG" ;;
    P) auth="$auth -P $OPTARG" ;;
    *) echo "usage: $0 [-h host] [-p port] [-w worker] [-c LOW|NORMAL|HIGH] -- CMD ARGS..." >&2
       exit 64 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || { echo "$0: no command given" >&2; exit 64; }

say() { echo "lull-lease: $*" >&2; }
# field NAME JSON: the value of a top-level string or number field.
field() {
  printf '%s' "$2" | sed -n -e "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" \
    -e "t" -e "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p"
}
# rr TOPIC PAYLOAD: one request, its reply on our own inbox (empty on timeout).
inbox="workers/$worker/reply/$$"
rr() {
  # shellcheck disable=SC2086
  mosquitto_rr -h "$host" -p "$port" $auth -V 5 -q 1 -W 10 -t "$1" -e "$inbox" -m "$2" 2>/dev/null
}

# 1. Ask until granted; a denial says when to ask again.
request="{\"v\":1,\"worker_id\":\"$worker\",\"cost_class\":\"$class\",\"job_type\":\"$(basename "$1")\"}"
while :; do
  reply=$(rr scheduler/lease/request "$request")
  [ -n "$reply" ] || { say "no reply from lulld on $host:$port"; exit 69; }
  case $reply in
    *'"approved":true'*) break ;;
    *'"ok":false'*) say "refused: $reply"; exit 64 ;;
  esac
  retry=$(field retry_after_sec "$reply")
  retry=${retry%.*}
  [ "${retry:-0}" -ge 1 ] 2>/dev/null || retry=1
  say "waiting ${retry}s: $(field reason "$reply")"
  sleep "$retry"
done
lease=$(field lease_id "$reply")
interval=$(field heartbeat_interval_sec "$reply")
interval=${interval%.*}
[ "${interval:-0}" -ge 1 ] 2>/dev/null || interval=1
say "lease $lease (fencing token $(field fencing_token "$reply"))"

# 2. Run the command; heartbeat every interval while it runs.
LULL_LEASE_ID=$lease LULL_FENCING_TOKEN=$(field fencing_token "$reply") "$@" &
child=$!
trap 'kill -TERM $child 2>/dev/null' INT TERM
lost=""
while kill -0 "$child" 2>/dev/null; do
  waited=0
  while [ "$waited" -lt "$interval" ] && kill -0 "$child" 2>/dev/null; do
    sleep 1
    waited=$((waited + 1))
  done
  kill -0 "$child" 2>/dev/null || break
  beat=$(rr "scheduler/lease/$lease/heartbeat" "{\"v\":1,\"worker_id\":\"$worker\"}")
  case $beat in
    *'"ok":false'*)  # revoked or expired: stop the work
      lost=$(field message "$beat")
      say "lease lost ($lost): stopping the command"
      kill -TERM "$child" 2>/dev/null
      break ;;
  esac
done
wait "$child"
code=$?
while kill -0 "$child" 2>/dev/null; do  # a signal cut the wait short
  wait "$child"
  code=$?
done

# 3. Release with the outcome (fire and forget).
if [ "$code" -eq 0 ] && [ -z "$lost" ]; then outcome=succeeded; else outcome=failed; fi
# shellcheck disable=SC2086  # $auth is zero or more words
mosquitto_pub -h "$host" -p "$port" $auth -q 1 -t "scheduler/lease/$lease/release" \
  -m "{\"v\":1,\"worker_id\":\"$worker\",\"outcome\":\"$outcome\",\"result\":{\"exit_code\":$code}}"
say "released $lease: $outcome"
exit "$code"
