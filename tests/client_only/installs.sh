#!/bin/sh
# Installs lull's client component into a private prefix, then builds the
# worker in this directory as a separate project against it alone.
set -eu
build="$1"
src="$(cd "$(dirname "$0")" && pwd)"
tmp="$(mktemp -d /tmp/lull-client-install-XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --component client --prefix "$tmp/prefix" >/dev/null
cmake -S "$src" -B "$tmp/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/build" >/dev/null
"$src/links_alone.sh" "$tmp/build/lull_client_worker"
echo "built against $tmp/prefix alone"
