#!/usr/bin/env bash
# Refresh storm benchmark (see BENCHMARKS.md): builds forcelink and sfsim in release mode, then
# runs `forcelink bench refresh-storm` on SQLite and on PostgreSQL. The table goes to stdout and
# to target/bench/refresh-storm-STORE.txt, the JSON line to target/bench/refresh-storm-STORE.json;
# forcelink's logs (at the default level, as `forcelink serve` logs) to target/bench/*.log.
#
#   bench/refresh-storm.sh                      # N=1000, M=20, both stores
#   STORES=sqlite N=200 M=5 bench/refresh-storm.sh
#   PG_URL=postgres://postgres@127.0.0.1:5432/postgres bench/refresh-storm.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-1000}"
M="${M:-20}"
STORES="${STORES:-sqlite postgres}"
PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
OUT=target/bench
mkdir -p "$OUT"
cargo build --release -p forcelink -p sfsim
status=0
for store in $STORES; do
  echo "== refresh storm: N=$N M=$M store=$store"
  raw="$OUT/refresh-storm-$store.raw"
  target/release/forcelink bench refresh-storm --connections "$N" --callers "$M" \
    --store "$store" --pg-url "$PG_URL" --json 2>"$OUT/refresh-storm-$store.log" >"$raw" || status=1
  grep -v '^{' "$raw" | tee "$OUT/refresh-storm-$store.txt"
  grep '^{' "$raw" >"$OUT/refresh-storm-$store.json" || true
  rm -f "$raw"
  [ "$status" = 0 ] || tail -n 5 "$OUT/refresh-storm-$store.log"
done
exit "$status"
