#!/usr/bin/env bash
# What the two SQLite cuts that wait for the team's decision would buy (BENCHMARKS.md, "Two
# SQLite cuts, measured"): one heartbeat round over N connections for HEAD as it is and for a
# throw-away copy of HEAD (a git worktree, never committed) with
#   1. SQLite's page-cache walk patched out (bench/sqlite-cuts/pcache.patch on the sqlite3.c
#      that libsqlite3-sys bundles, vendored into the copy), and
#   2. an environment switch, FLX_DROP_LINEAGE_INDEX, that drops the lineage's index by
#      connection after the migrations (bench/sqlite-cuts/drop-lineage-index.patch): what the
#      lineage-as-chain design would save, without its cost of walking a chain.
# Variants: base (HEAD), patch (1), patch-noindex (1 + 2), in the order given, so that running
# "base patch patch-noindex base" brackets the copies with the machine's speed. About 15 min per
# variant at N = 100000 (set-up ~11 min); nothing else should run meanwhile. Not for CI.
#
#   bench/sqlite-cuts.sh
#   VARIANTS="base patch-noindex base" N=100000 CONCURRENCY=128 bench/sqlite-cuts.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
N="${N:-100000}"
CONCURRENCY="${CONCURRENCY:-32,128}"
VARIANTS="${VARIANTS:-base patch patch-noindex base}"
OUT="$root/target/bench"
mkdir -p "$OUT"
work="${WORK:-$(mktemp -d)}"
copy="$work/forcelink-sqlite-cuts"
manifest=$(cargo metadata --format-version 1 --locked --filter-platform "$(rustc -vV | sed -n "s/host: //p")" \
  | python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "libsqlite3-sys"))')
cargo build --release --locked -p forcelink -p sfsim
if [ ! -d "$copy" ]; then
  git worktree add --detach "$copy" HEAD
  mkdir -p "$copy/vendor"
  cp -r "$(dirname "$manifest")" "$copy/vendor/libsqlite3-sys"
  patch -d "$copy/vendor/libsqlite3-sys" -p1 < bench/sqlite-cuts/pcache.patch
  patch -d "$copy" -p1 < bench/sqlite-cuts/drop-lineage-index.patch
  printf 'libsqlite3-sys = { path = "vendor/libsqlite3-sys" }\n' >> "$copy/Cargo.toml"
fi
(cd "$copy" && CARGO_TARGET_DIR="$copy/target" cargo build --release -p forcelink -p sfsim)
for variant in $VARIANTS; do
  case "$variant" in
    base) binary="$root/target/release/forcelink"; switch=() ;;
    patch) binary="$copy/target/release/forcelink"; switch=() ;;
    patch-noindex) binary="$copy/target/release/forcelink"; switch=(FLX_DROP_LINEAGE_INDEX=1) ;;
    *) echo "unknown variant $variant (base, patch, patch-noindex)" >&2; exit 2 ;;
  esac
  log="$OUT/sqlite-cuts-$variant-$(date -u +%H%M).txt"
  echo "== $variant -> $log"
  env "${switch[@]}" "$binary" bench heartbeat-round --connections "$N" --store sqlite \
    --concurrency "$CONCURRENCY" > "$log" 2> "$log.err"
  grep -E 'forcelink CPU per refresh|SQLite engine|outside the engine|sfsim CPU per refresh|writes per refresh' "$log"
done
echo "the copy stays in $copy (git worktree remove --force $copy)"
