#!/bin/sh
# Passes when the worker binary holds nothing of lull's server: no CAF, no
# SQLite, no spdlog, statically or as a shared library.
set -eu
bin="$1"
found=0
for lib in libcaf_core libsqlite3 libspdlog; do
  if ldd "$bin" | grep -q "$lib"; then
    echo "$bin loads $lib"
    found=1
  fi
done
for sym in 'caf::' 'sqlite3_' 'spdlog::'; do
  n=$(nm -C "$bin" | grep -c "$sym" || true)
  if [ "$n" -ne 0 ]; then
    echo "$bin holds $n symbols of $sym"
    found=1
  fi
done
# ...and it does hold the client.
nm -C "$bin" | grep -q 'lull::lease_client::request' || { echo "no lease client in $bin"; exit 1; }
exit "$found"
