#!/bin/sh
# The include graph has no upward arrows. Layers, bottom up:
#   messages/                      wire types and codecs (no CAF, no server)
#   src/mqtt/, src/client/lease_*  lull::client: messages + transport
#   src/ cores                     config, probes, store, lease/queue cores
#   actors/                        CAF actors over the cores
#   src/cli/, src/*_main.cpp       the programs
# A file may include its own layer and the ones below it, never one above;
# the store includes neither config nor probes nor the scheduler's cores, and
# the scheduler's cores do not include the store. Prints every offending
# include and fails when there is one.
set -eu
root="${1:-$(cd "$(dirname "$0")/.." && pwd)}"
cd "$root"
bad=0

# check FILES... -- PATTERN WHY: no file may have an include matching PATTERN.
check() {
  pattern="$1"
  why="$2"
  shift 2
  [ "$#" -gt 0 ] || return 0
  hits=$(grep -nE "^[[:space:]]*#[[:space:]]*include[[:space:]]*$pattern" "$@" /dev/null || true)
  if [ -n "$hits" ]; then
    printf '%s\n' "$hits" | sed "s|\$|   <- $why|"
    bad=1
  fi
}

sources() { find "$@" -type f \( -name '*.hpp' -o -name '*.cpp' \) 2>/dev/null | sort; }

messages=$(sources messages)
client=$(sources src/mqtt; ls src/client/lease_client.* 2>/dev/null)
cores=$(sources src | grep -v -e '^src/cli/' -e '^src/[^/]*_main\.cpp$')
store=$(sources src/store)
scheduler=$(sources src/lease src/queue)
actors=$(sources actors)

# shellcheck disable=SC2086
{
  check '"(src|actors)/' 'messages/ includes only messages/' $messages
  check '<(caf|spdlog|sqlite3|mqtt)[/.]' 'messages/ is plain C++ and JSON' $messages
  check '"(actors/|src/(cli|client/supervise|config|log|process|probe|store|stats|lease|queue|quiet|workers|ha)[/.])' \
    'lull::client holds messages/ and the transport only' $client
  check '<(caf|spdlog|sqlite3)[/.]' 'lull::client has no CAF, spdlog or SQLite' $client
  check '"actors/' 'the cores do not include actors/' $cores
  check '<caf/' 'the cores are free of CAF' $cores
  check '"src/(cli/|lull_main|lulld_main)' 'only the programs include the CLI' $cores $actors
  check '"src/(config|probe/|lease/|queue/|stats/|quiet/|workers/)' \
    'the store is free of config, probes and the scheduler' $store
  check '"src/store/' "the scheduler's cores do not include the store" $scheduler
}

# Sanity: the lists are not empty (a moved tree would pass vacuously).
for layer in messages client cores actors; do
  eval "files=\$$layer"
  if [ -z "$files" ]; then
    echo "no files in layer $layer under $root"
    bad=1
  fi
done
[ "$bad" -eq 0 ] && echo "include graph: no upward arrows"
exit "$bad"
