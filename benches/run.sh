#!/usr/bin/env bash
# Vigil benchmark: engine (1 and 2 workers) against the single-threaded baseline,
# on generated workloads at three failure ratios, with an exact alert comparison.
#
#   benches/run.sh [--events N] [--seed S] [--repeat R] [--baseline-only]
#
# Data and results go to ${VIGIL_BENCH_DIR:-var/bench}. Generated files are kept
# and reused; their name encodes the generator flags. Results: results.md there.
# --baseline-only skips building and running the engine; VIGIL_ENGINE overrides
# the engine binary. The VM is noisy: only ratios within one run mean anything.
set -euo pipefail

usage() {
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
}

EVENTS=3000000
SEED=42
REPEAT=3
BASELINE_ONLY=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --events) EVENTS="$2"; shift 2 ;;
        --events=*) EVENTS="${1#*=}"; shift ;;
        --seed) SEED="$2"; shift 2 ;;
        --seed=*) SEED="${1#*=}"; shift ;;
        --repeat) REPEAT="$2"; shift 2 ;;
        --repeat=*) REPEAT="${1#*=}"; shift ;;
        --baseline-only) BASELINE_ONLY=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
[[ "$EVENTS" =~ ^[0-9]+$ ]] || { echo "run.sh: --events must be an integer" >&2; exit 2; }
[[ "$SEED" =~ ^[0-9]+$ ]] || { echo "run.sh: --seed must be an integer" >&2; exit 2; }
[[ "$REPEAT" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --repeat must be a positive integer" >&2; exit 2; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BENCH_DIR="${VIGIL_BENCH_DIR:-var/bench}"
mkdir -p "$BENCH_DIR"
# The two rules the baseline reproduces the load of (brute force exactly), pinned so that rules
# added to rules/auth later do not change what this benchmark measures.
RULES=(rules/auth/brute_force_login.rule rules/auth/password_spray.rule)
RATIOS=(0.05 0.005 0.5)   # the first is the headline
TIME=/usr/bin/time
[[ -x "$TIME" ]] || { echo "run.sh: $TIME (GNU time) is required" >&2; exit 1; }
command -v python3 >/dev/null || { echo "run.sh: python3 is required" >&2; exit 1; }

if [[ "$BASELINE_ONLY" == 1 ]]; then
    cargo build --release -p vigil-bench
else
    cargo build --release -p vigil-bench -p vigil-cli
fi
GEN=target/release/vigil-gen
BASE=target/release/vigil-baseline
VIGIL="${VIGIL_ENGINE:-target/release/vigil}"   # override to bench another engine build

# timed LABEL STDERR_FILE CMD... : runs CMD under GNU time; sets WALL (s) and RSS (KiB).
timed() {
    local label="$1" errf="$2"
    shift 2
    local tf="$errf.time"
    rm -f "$tf"
    if ! "$TIME" -f '%e %M' -o "$tf" "$@" 2>"$errf"; then
        echo "run.sh: $label failed; stderr ($errf):" >&2
        tail -n 20 "$errf" >&2
        exit 1
    fi
    read -r WALL RSS < <(tail -n 1 "$tf")
}

# rate WALL : events per second of wall time (process start to exit, output flushed). The
# same measure for baseline and engine, so the ratio compares whole runs.
rate() { awk -v n="$EVENTS" -v w="$1" 'BEGIN { printf "%.0f", (w > 0 ? n / w : 0) }'; }

# state_bytes_per_key STDERR_FILE : brute_force_login's live window state per (tenant, user)
# key at its peak, from the engine's `state[brute_force_login]: ... bytes_per_key=<f>` line.
state_bytes_per_key() {
    local v
    v=$(sed -n 's/^state\[brute_force_login\]:.*bytes_per_key=\([0-9.eE+-]*\).*$/\1/p' "$1" | tail -n 1)
    printf '%s' "${v:--}"
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
max() { awk -v a="$1" -v b="$2" 'BEGIN { print (a > b ? a : b) }'; }
fmt_rate() { awk -v v="$1" 'BEGIN { printf "%.0f", v }'; }
ratio_of() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }

# compare BASELINE_OUT ENGINE_OUT : exact set comparison of brute_force_login alerts.
compare() {
    python3 - "$1" "$2" <<'PY'
import json, sys
from datetime import datetime

def ms(v):
    if isinstance(v, (int, float)):
        return int(v)
    return int(round(datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp() * 1000))

def num(v):
    return int(v) if float(v).is_integer() else float(v)

def lines(path):
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError as e:
                    sys.exit(f"{path}:{n}: not JSON: {e}")

base = [(a["tenant_id"], a["user.name"], ms(a["window_end"]), num(a["value"])) for a in lines(sys.argv[1])]
eng = []
for a in lines(sys.argv[2]):
    rid = str(a.get("rule_id", ""))
    if rid == "brute_force_login" or rid.endswith((".brute_force_login", "/brute_force_login")):
        eng.append((a["tenant_id"], a["group"]["user.name"], ms(a["window"]["end"]), num(a["value"])))
bs, es = set(base), set(eng)
if len(es) != len(eng):
    print(f"warning: engine wrote {len(eng) - len(es)} duplicate brute_force_login alerts", file=sys.stderr)
if bs != es:
    fmt = lambda t: f"  tenant={t[0]} user={t[1]} window_end={t[2]} value={t[3]}"
    only_b, only_e = sorted(bs - es), sorted(es - bs)
    print(f"MISMATCH: baseline={len(bs)} engine={len(es)} only_baseline={len(only_b)} only_engine={len(only_e)}", file=sys.stderr)
    for title, rows in (("only in baseline:", only_b), ("only in engine:", only_e)):
        if rows:
            print(title, file=sys.stderr)
            for t in rows[:10]:
                print(fmt(t), file=sys.stderr)
    sys.exit(1)
print(len(bs))
PY
}

HEADER='| ratio | baseline ev/s | engine w1 ev/s | w1/baseline | engine w2 ev/s | w2/baseline | peak RSS (MiB) baseline/w1/w2 | alerts (brute force) | brute_force_login state bytes/key w1/w2 |'
SEP='| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'
ROWS=()

for ratio in "${RATIOS[@]}"; do
    data="$BENCH_DIR/events-${ratio}-n${EVENTS}-s${SEED}.jsonl"
    if [[ -s "$data" ]]; then
        echo "== reusing $data" >&2
    else
        echo "== generating $data" >&2
        "$GEN" --events "$EVENTS" --seed "$SEED" --failure-ratio "$ratio" --output "$data.tmp"
        mv "$data.tmp" "$data"
    fi
    stem="$BENCH_DIR/out-${ratio}-n${EVENTS}-s${SEED}"

    # REPEAT interleaved rounds of (baseline, engine w1, engine w2); each program's median wall
    # time is reported, which tames the VM's run-to-run noise without hiding it.
    declare -A walls=() rss=() bpk=()
    for ((rep = 1; rep <= REPEAT; rep++)); do
        echo "== [$ratio] round $rep/$REPEAT: baseline" >&2
        timed baseline "$stem.baseline.err" "$BASE" --input "$data" --output "$stem.baseline.jsonl"
        walls[b]+="$WALL " rss[b]=$(max "${rss[b]:-0}" "$RSS")
        grep '^baseline:' "$stem.baseline.err" | tail -n 1 >&2
        [[ "$BASELINE_ONLY" == 1 ]] && continue
        for w in 1 2; do
            echo "== [$ratio] round $rep/$REPEAT: engine --workers $w" >&2
            rm -f "$stem.w$w.jsonl"
            timed "engine w$w" "$stem.w$w.err" \
                "$VIGIL" run --rules "${RULES[@]}" --input "$data" --output "$stem.w$w.jsonl" --workers "$w"
            if [[ ! -f "$stem.w$w.jsonl" ]]; then
                echo "run.sh: engine (workers $w) exited 0 but wrote no $stem.w$w.jsonl" >&2
                exit 1
            fi
            walls[$w]+="$WALL " rss[$w]=$(max "${rss[$w]:-0}" "$RSS")
            bpk[$w]=$(state_bytes_per_key "$stem.w$w.err")
            echo "   wall_s=$WALL rss_kib=$RSS" >&2
        done
    done
    b_eps=$(rate "$(median ${walls[b]})")
    b_rss=${rss[b]}
    b_alerts=$(grep -c . "$stem.baseline.jsonl" || true)
    if [[ "$BASELINE_ONLY" == 1 ]]; then
        ROWS+=("| $ratio | $(fmt_rate "$b_eps") | - | - | - | - | $(mib "$b_rss")/-/- | $b_alerts | - |")
        unset walls rss bpk
        continue
    fi
    declare -A eps=()
    for w in 1 2; do
        eps[$w]=$(rate "$(median ${walls[$w]})")
    done
    for w in 1 2; do
        echo "== [$ratio] comparing baseline and engine w$w alerts" >&2
        n=$(compare "$stem.baseline.jsonl" "$stem.w$w.jsonl") || {
            echo "run.sh: brute_force_login alerts differ (ratio $ratio, workers $w)" >&2
            exit 1
        }
    done
    ROWS+=("| $ratio | $(fmt_rate "$b_eps") | $(fmt_rate "${eps[1]}") | $(ratio_of "${eps[1]}" "$b_eps") | $(fmt_rate "${eps[2]}") | $(ratio_of "${eps[2]}" "$b_eps") | $(mib "$b_rss")/$(mib "${rss[1]}")/$(mib "${rss[2]}") | $n | ${bpk[1]}/${bpk[2]} |")
    unset eps walls rss bpk
done

{
    echo "# Vigil benchmark results"
    echo
    echo "- events per file: $EVENTS (seed $SEED, vigil-gen defaults otherwise); rules: ${RULES[*]}"
    echo "- machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
    echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty)'); date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "- $REPEAT interleaved rounds (baseline, engine w1, engine w2) per ratio; ev/s = events / median wall time of the whole process"
    echo
    echo "$HEADER"
    echo "$SEP"
    printf '%s\n' "${ROWS[@]}"
} | tee "$BENCH_DIR/results.md"
