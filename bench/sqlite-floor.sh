#!/usr/bin/env bash
# The SQLite floor of a heartbeat refresh (see BENCHMARKS.md, "The SQLite floor"): the CPU that
# SQLite alone spends storing one refresh's result at N connections, with forcelink's settings
# and none of forcelink's code. Compiles bench/sqlite-floor.c against the amalgamation that
# libsqlite3-sys bundles (the engine forcelink links), with its build flags, and runs it twice:
# the connection row alone (the least any design writes) and with forcelink's lineage row.
#
#   bench/sqlite-floor.sh                        # N=100000, G=64, 2 rounds, in $TMPDIR
#   N=10000 G=128 ROUNDS=3 DIR=/dev/shm bench/sqlite-floor.sh
#   FLOOR_SQL="DROP INDEX refresh_attempts_by_connection;" bench/sqlite-floor.sh  # other settings
#   FLOOR_PRE_SQL="PRAGMA page_size = 2048;" bench/sqlite-floor.sh  # before the first table
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-100000}"
G="${G:-64}"
ROUNDS="${ROUNDS:-2}"
DIR="${DIR:-${TMPDIR:-/tmp}}"
OUT=target/bench
mkdir -p "$OUT"
manifest=$(cargo metadata --format-version 1 --locked --filter-platform "$(rustc -vV | sed -n "s/host: //p")" \
  | python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "libsqlite3-sys"))')
amalgamation="$(dirname "$manifest")/sqlite3"
[ -f "$amalgamation/sqlite3.c" ] || { echo "no sqlite3.c in $amalgamation (run cargo fetch)" >&2; exit 2; }
# libsqlite3-sys's flags for its bundled build (build.rs), sqlx's unlock_notify, -O3 as release.
cc -O3 -g -I"$amalgamation" -o "$OUT/sqlite-floor" bench/sqlite-floor.c "$amalgamation/sqlite3.c" \
  -DSQLITE_CORE -DSQLITE_DEFAULT_FOREIGN_KEYS=1 -DSQLITE_ENABLE_API_ARMOR \
  -DSQLITE_ENABLE_COLUMN_METADATA -DSQLITE_ENABLE_DBSTAT_VTAB -DSQLITE_ENABLE_FTS3 \
  -DSQLITE_ENABLE_FTS3_PARENTHESIS -DSQLITE_ENABLE_FTS5 -DSQLITE_ENABLE_JSON1 \
  -DSQLITE_ENABLE_LOAD_EXTENSION=1 -DSQLITE_ENABLE_MEMORY_MANAGEMENT -DSQLITE_ENABLE_RTREE \
  -DSQLITE_ENABLE_STAT4 -DSQLITE_SOUNDEX -DSQLITE_THREADSAFE=1 -DSQLITE_USE_URI \
  -DHAVE_USLEEP=1 -DHAVE_ISNAN -D_POSIX_THREAD_SAFE_FUNCTIONS -DSQLITE_ENABLE_UNLOCK_NOTIFY \
  -lpthread -ldl -lm
echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), dir $DIR"
"$OUT/sqlite-floor" "$N" "$G" "$ROUNDS" "$DIR"
"$OUT/sqlite-floor" "$N" "$G" "$ROUNDS" "$DIR" lineage
