#!/usr/bin/env bash
# The agent-facing benchmarks (BENCHMARKS.md "Agent API"), driven by wrk from its own process:
#  (a) POST /v1/connections/{org}/token with a cached token vs GET /healthz (the same server's
#      trivial static route, the floor), 64 connections: requests/s, p50, p99;
#  (b) GET .../limits through /v1/proxy vs straight to sfsim with the access token: added
#      latency p50/p99, at 1 connection (no queueing) and at 64.
# Needs wrk (apt-get install wrk). Env: DURATION (default 15s), STORE (sqlite|postgres),
# THREADS (wrk threads, default 2), ROUNDS (default 1; each round runs every case once).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-15s}
STORE=${STORE:-sqlite}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-1}
out_dir=target/bench
mkdir -p "$out_dir"
targets="$out_dir/agent-targets.json"
report="$out_dir/agent-api-$STORE.txt"

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
cargo build --release -q -p forcelink -p sfsim

rm -f "$targets"
target/release/forcelink bench agent-serve --out "$targets" --store "$STORE" \
    2> "$out_dir/agent-serve-$STORE.log" &
server=$!
trap 'kill -INT $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  [ -f "$targets" ] && break
  kill -0 $server 2>/dev/null || { cat "$out_dir/agent-serve-$STORE.log" >&2; exit 1; }
  sleep 0.1
done
[ -f "$targets" ] || { echo "agent-serve did not come up" >&2; exit 1; }

field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$targets" "$1"; }
static_url=$(field static_url)
token_url=$(field token_url)
proxy_url=$(field proxy_url)
proxy_context=$(field proxy_context)
direct_url=$(field direct_url)
agent_key=$(field agent_key)
access_token=$(field access_token)

post_lua="$out_dir/post.lua"
printf 'wrk.method = "POST"\n' > "$post_lua"

# One wrk run; prints "name conns requests/s p50_us p99_us non2xx".
run() {
  local name=$1 conns=$2; shift 2
  local threads=$THREADS
  [ "$conns" -lt "$threads" ] && threads=$conns
  local text
  text=$(wrk -t"$threads" -c"$conns" -d"$DURATION" --latency "$@")
  echo "$text" > "$out_dir/wrk-$name-c$conns.txt"
  python3 - "$name" "$conns" <<PY
import re, sys
text = """$text"""
def micros(value):
    number, unit = re.match(r"([\d.]+)(us|ms|s)", value).groups()
    return float(number) * {"us": 1, "ms": 1000, "s": 1e6}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = micros(re.search(r"\s50%\s+(\S+)", text).group(1))
p99 = micros(re.search(r"\s99%\s+(\S+)", text).group(1))
non = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
print(f"{sys.argv[1]} {sys.argv[2]} {rps:.0f} {p50:.0f} {p99:.0f} {non.group(1) if non else 0}")
PY
}

{
  echo "# agent API benchmark, store=$STORE, duration=$DURATION per case, wrk threads=$THREADS"
  echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git rev-parse --short HEAD)"
  echo "# case connections requests/s p50_us p99_us non2xx"
  for round in $(seq 1 "$ROUNDS"); do
    run static 64 "$static_url"
    run token 64 -s "$post_lua" -H "Authorization: Bearer $agent_key" "$token_url"
    run direct 1 -H "Authorization: Bearer $access_token" "$direct_url"
    run proxy 1 -H "Authorization: Bearer $agent_key" -H "x-forcelink-context: $proxy_context" "$proxy_url"
    run direct 64 -H "Authorization: Bearer $access_token" "$direct_url"
    run proxy 64 -H "Authorization: Bearer $agent_key" -H "x-forcelink-context: $proxy_context" "$proxy_url"
  done
} | tee "$report"

python3 - "$report" <<'PY'
import sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    if line.startswith("#"):
        continue
    name, conns, rps, p50, p99, non = line.split()
    rows[(name, int(conns))].append((float(rps), float(p50), float(p99), int(non)))
def median(values):
    values = sorted(values)
    return values[len(values) // 2]
def stat(key, index):
    return median([row[index] for row in rows[key]])
bad = sum(row[3] for runs in rows.values() for row in runs)
print()
print(f"non-2xx responses over all runs: {bad}")
floor_rps, token_rps = stat(("static", 64), 0), stat(("token", 64), 0)
floor_p99, token_p99 = stat(("static", 64), 2), stat(("token", 64), 2)
# Each round runs the floor and the token API back to back, so the fairest statistic is the
# median of the per-round ratios; the ratio of the medians is printed too.
pairs = list(zip(rows[("static", 64)], rows[("token", 64)]))
rps_ratio = median([token[0] / floor[0] for floor, token in pairs])
p99_ratio = median([token[2] / floor[2] for floor, token in pairs])
print(f"(a) token API {token_rps:.0f} req/s vs static floor {floor_rps:.0f} (medians: {100 * token_rps / floor_rps:.0f}%)")
print(f"    median per-round ratio {100 * rps_ratio:.0f}% of the floor (target >= 70%): {'PASS' if rps_ratio >= 0.7 else 'FAIL'}")
print(f"    p99 {token_p99:.0f} us vs floor {floor_p99:.0f} us; median per-round ratio {p99_ratio:.2f}x (target <= 1.5x): {'PASS' if p99_ratio <= 1.5 else 'FAIL'}")
for conns in (1, 64):
    added50 = stat(("proxy", conns), 1) - stat(("direct", conns), 1)
    added99 = stat(("proxy", conns), 2) - stat(("direct", conns), 2)
    verdict = "PASS" if added50 <= 200 else "FAIL"
    print(f"(b) proxy at {conns} connection(s): added p50 {added50:.0f} us, p99 {added99:.0f} us (target p50 <= 200 us): {verdict}")
PY
