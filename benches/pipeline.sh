#!/usr/bin/env bash
# Vigil service-path benchmark, beside the JetStream wall measured in the same run:
# RAW -> normalize -> engine throughput (K rounds of wall and both routes, medians),
# publish -> alert latency, and HTTP ingest throughput under wrk (bounded: 2 threads,
# 16 connections, loopback).
#
#   benches/pipeline.sh [--events N] [--rounds K] [--rate R] [--seconds S]
#
# Needs the dev services (started here) and wrk (installed with apt if missing).
# Results: var/bench/pipeline/results.md. Not part of CI (it takes about three minutes).
set -euo pipefail

EVENTS=300000
ROUNDS=3
RATE=10000
SECONDS_LIVE=15
while [[ $# -gt 0 ]]; do
    case "$1" in
        --events) EVENTS="$2"; shift 2 ;;
        --rounds) ROUNDS="$2"; shift 2 ;;
        --rate) RATE="$2"; shift 2 ;;
        --seconds) SECONDS_LIVE="$2"; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "pipeline.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done

cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=var/bench/pipeline
mkdir -p "$OUT"
bash scripts/services.sh up >/dev/null
cargo build --release -p vigil-cli -p vigil-bench
VIGIL=target/release/vigil
if ! command -v wrk >/dev/null; then
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi

target/release/vigil-pipeline --vigil "$VIGIL" --events "$EVENTS" --rounds "$ROUNDS" --rate "$RATE" \
    --seconds "$SECONDS_LIVE" --dir "$OUT" | tee "$OUT/results.md"
PUBLISH_WALL=$(awk -F'|' '/JetStream publish/ {gsub(/[^0-9.]/, "", $3); print $3}' "$OUT/results.md")

# HTTP ingest under wrk: 100 NDJSON events per request, ids assigned by the server.
source var/services.env
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
TENANT="bench_i$$"
cat > "$OUT/api.toml" <<TOML
listen = "127.0.0.1:$PORT"
nats_url = "$VIGIL_NATS_URL"
[jwt]
issuer = "https://idp.bench"
audience = "vigil"
[[jwt.keys]]
alg = "HS256"
secret_env = "BENCH_JWT_SECRET"
[[tenants]]
id = "$TENANT"
events_per_sec = 100000000.0
burst = 100000000
[streams]
raw = { max_age = "1d", max_bytes = 268435456 }
normalized = { max_age = "2d", max_bytes = 268435456 }
alerts = { max_age = "3d", max_bytes = 268435456 }
dlq = { max_age = "4d", max_bytes = 268435456 }
TOML
export BENCH_JWT_SECRET="bench-secret-bench-secret-bench-secret"
"$VIGIL" ingest --config "$OUT/api.toml" 2>"$OUT/ingest.log" &
INGEST=$!
trap 'kill $INGEST 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
TOKEN=$("$VIGIL" dev-token --secret-env BENCH_JWT_SECRET --tenant "$TENANT" --issuer https://idp.bench)
python3 - "$OUT/body.ndjson" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    for i in range(100):
        f.write('{"@timestamp":"2026-11-30T10:00:00.%03dZ","event":{"category":["authentication"],"outcome":"failure"},"user":{"name":"user%d"},"source":{"ip":"10.1.0.%d"}}\n' % (i, i % 50, i % 200))
PY
cat > "$OUT/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
wrk.headers["Content-Type"] = "application/x-ndjson"
local f = assert(io.open(os.getenv("BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
LUA
TOKEN="$TOKEN" BODY="$OUT/body.ndjson" wrk -t2 -c16 -d10s --latency -s "$OUT/post.lua" \
    "http://127.0.0.1:$PORT/v1/ingest/events" > "$OUT/wrk.txt"
RPS=$(awk '/Requests\/sec/ {print $2}' "$OUT/wrk.txt")
P99=$(awk '/ 99%/ {print $2}' "$OUT/wrk.txt")
NON2XX=$(awk '/Non-2xx/ {print $5}' "$OUT/wrk.txt")
python3 - "$RPS" "$PUBLISH_WALL" "${P99:-?}" "${NON2XX:-0}" <<'PY' | tee -a "$OUT/results.md"
import sys
rps, wall, p99, bad = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
eps = rps * 100
print(f"| HTTP ingest (wrk, 2 threads, 16 connections, 100 events/request; {bad} non-2xx) | {eps:.0f} events/s, p99 {p99} per request | {eps / wall:.2f} of publish |")
PY
