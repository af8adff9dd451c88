#!/usr/bin/env bash
# Heartbeat round benchmark (see BENCHMARKS.md): builds forcelink and sfsim in release mode, then
# runs `forcelink bench heartbeat-round` on SQLite (database on disk), SQLite with the database on
# tmpfs (/dev/shm, no real fsync) and PostgreSQL. The table goes to stdout and to
# target/bench/heartbeat-round-VARIANT.txt, the JSON line to target/bench/heartbeat-round-VARIANT.json,
# forcelink's logs (default level info; a heartbeat refresh logs at debug) to target/bench/heartbeat-round-VARIANT.log.
#
#   bench/heartbeat-round.sh                          # N=100000, concurrency 32, all three variants
#   N=20000 CONCURRENCY=8,32 bench/heartbeat-round.sh
#   VARIANTS="sqlite postgres" PG_URL=postgres://postgres@127.0.0.1:5432/postgres bench/heartbeat-round.sh
#   PERF=1 N=3000 VARIANTS=sqlite bench/heartbeat-round.sh   # + perf profile of the first round
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-100000}"
CONCURRENCY="${CONCURRENCY:-32}"
BATCH="${BATCH:-500}"
VARIANTS="${VARIANTS:-sqlite sqlite-tmpfs postgres}"
PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
TMPFS="${TMPFS:-/dev/shm}"
OUT=target/bench
BIN="${BIN:-target/release}"
mkdir -p "$OUT"
[ -n "${NO_BUILD:-}" ] || cargo build --release -p forcelink -p sfsim
status=0
for variant in $VARIANTS; do
  extra=()
  case "$variant" in
    sqlite) store=sqlite ;;
    sqlite-tmpfs) store=sqlite; extra+=(--db-dir "$TMPFS") ;;
    postgres) store=postgres ;;
    *) echo "unknown variant $variant (sqlite, sqlite-tmpfs, postgres)" >&2; exit 2 ;;
  esac
  if [ -n "${PERF:-}" ]; then
    extra+=(--perf-record "$OUT/heartbeat-round-$variant.perf.data")
  fi
  echo "== heartbeat round: N=$N concurrency=$CONCURRENCY batch=$BATCH variant=$variant"
  raw="$OUT/heartbeat-round-$variant.raw"
  "$BIN/forcelink" bench heartbeat-round --connections "$N" --store "$store" \
    --pg-url "$PG_URL" --batch "$BATCH" --concurrency "$CONCURRENCY" "${extra[@]}" --json \
    2>"$OUT/heartbeat-round-$variant.log" >"$raw" || status=1
  grep -v '^{' "$raw" | tee "$OUT/heartbeat-round-$variant.txt"
  grep '^{' "$raw" >"$OUT/heartbeat-round-$variant.json" || true
  rm -f "$raw"
  [ "$status" = 0 ] || tail -n 5 "$OUT/heartbeat-round-$variant.log"
  if [ -n "${PERF:-}" ] && [ -f "$OUT/heartbeat-round-$variant.perf.data" ]; then
    perf report -i "$OUT/heartbeat-round-$variant.perf.data" --no-children --sort dso,symbol \
      --stdio -g none 2>/dev/null | head -n 80 >"$OUT/heartbeat-round-$variant.perf.txt" || true
  fi
done
exit "$status"
