#!/usr/bin/env bash
# Heap allocations per heartbeat refresh (see BENCHMARKS.md): a count that does not move with the
# machine's speed, unlike CPU time. Runs `forcelink bench heartbeat-round` for one round and,
# for that round only, counts forcelink's calls to libc's malloc with a uprobe (`perf stat`);
# with SITES=1 it also records every 50th call with its stack and prints the allocating
# functions. Needs root and perf with uprobes. The probe slows each malloc, so the round's own
# CPU figures are meaningless here; only the count is.
#
#   bench/heartbeat-mallocs.sh                         # PostgreSQL, N=10000, concurrency 128
#   STORE=sqlite N=5000 SITES=1 bench/heartbeat-mallocs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
STORE="${STORE:-postgres}"
N="${N:-10000}"
CONCURRENCY="${CONCURRENCY:-128}"
PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
BIN="${BIN:-target/release}"
OUT=target/bench
mkdir -p "$OUT"
[ -n "${NO_BUILD:-}" ] || cargo build --release -p forcelink -p sfsim
libc=$(ldd "$BIN/forcelink" | awk '/libc\.so/ {print $3}')
perf probe -q -x "$libc" --add malloc 2>/dev/null || true
perf probe -l 2>/dev/null | grep -q 'probe_libc:malloc' \
  || { echo "cannot place a uprobe on malloc in $libc (root and perf with uprobes needed)" >&2; exit 2; }
log="$OUT/heartbeat-mallocs-$STORE.log"
: >"$log"
"$BIN/forcelink" bench heartbeat-round --connections "$N" --store "$STORE" --pg-url "$PG_URL" \
  --concurrency "$CONCURRENCY" 2>"$log" >/dev/null &
bench=$!
wait_for() { until grep -q "$1" "$log"; do kill -0 "$bench" 2>/dev/null || { tail -n 5 "$log"; exit 1; }; sleep 0.05; done; }
wait_for "bench: heartbeat round, batch"
if [ -n "${SITES:-}" ]; then
  perf record -q -e probe_libc:malloc -c 50 --call-graph dwarf,8192 -p "$bench" \
    -o "$OUT/heartbeat-mallocs-$STORE.perf.data" 2>/dev/null &
else
  perf stat -x, -e probe_libc:malloc -p "$bench" -o "$OUT/heartbeat-mallocs-$STORE.stat" &
fi
perf=$!
wait_for "bench: round done"
kill -INT "$perf"
wait "$perf" || true
wait "$bench"
refreshed=$(sed -n 's/.*round done in [0-9.]* s: \([0-9]*\) refreshed.*/\1/p' "$log" | head -n 1)
if [ -n "${SITES:-}" ]; then
  echo "store $STORE, N=$N, concurrency $CONCURRENCY: allocating functions (share of sampled mallocs)"
  perf script -i "$OUT/heartbeat-mallocs-$STORE.perf.data" --no-inline -F ip,sym 2>/dev/null | python3 -c '
import collections, re, sys
# The first frame that is neither the allocator nor a std/core/alloc helper names the caller.
helper = re.compile(r"^(__GI___libc_malloc|malloc|_int_|__libc|realloc|alloc::|<alloc::|core::|<core::|std::|<std::|__rust|hashbrown::|<hashbrown::|bytes::|<bytes::|<T as alloc|<\[|<str as|<&)")
sites, frames, total = collections.Counter(), [], 0
def flush():
    global frames, total
    if frames:
        total += 1
        sites[next((f for f in frames if not helper.match(f)), frames[-1])] += 1
    frames = []
for line in sys.stdin:
    if not line.strip():
        flush()
    elif line[0] in " \t":
        parts = line.split(None, 1)
        if len(parts) == 2:
            frames.append(re.sub(r"\+0x[0-9a-f]+$", "", parts[1].strip().rsplit(" (", 1)[0])[:150])
    else:
        flush()
flush()
for site, count in sites.most_common(25):
    print(f"{100 * count / max(total, 1):5.1f} %  {site}")
'
else
  calls=$(awk -F, '/probe_libc:malloc/ {print $1}' "$OUT/heartbeat-mallocs-$STORE.stat")
  echo "store $STORE, N=$N, concurrency $CONCURRENCY: $calls mallocs in the round, $refreshed refreshes," \
    "$(( calls / refreshed )) per refresh"
fi
