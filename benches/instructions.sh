#!/usr/bin/env bash
# Instruction counts of `vigil run` (cachegrind), for comparing engines where wall time is too
# noisy: deterministic for one binary and input, and per function with `cg_annotate`.
#
#   benches/instructions.sh [--events N] [--cache] SET BIN...
#
# SET is a rule set of benches/rule_mix.sh (base, plus50, plus60, plus65) or a folder of rules;
# BIN one or more vigil binaries. Runs each over the first N (default 200000) events of the
# rule-mix workload (make bench-rules generates it) at 1 worker and prints millions of
# instructions, with --cache also last-level data misses (a 32 MB cache, as on the bench
# machine). The cachegrind files stay in var/bench/cachegrind/ for cg_annotate. Needs valgrind
# (apt-get install valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=200000 CACHE=no
while [[ $# -gt 0 ]]; do
    case "$1" in
        --events) EVENTS="$2"; shift 2 ;;
        --cache) CACHE=yes; shift ;;
        *) break ;;
    esac
done
[[ $# -ge 2 ]] || { echo "usage: benches/instructions.sh [--events N] [--cache] SET BIN..." >&2; exit 2; }
command -v valgrind >/dev/null || { echo "instructions.sh: valgrind is required (apt-get install valgrind)" >&2; exit 1; }
set_dir="$1"; shift
[[ -d "$set_dir" ]] || set_dir="var/bench/rule_mix/$set_dir"
[[ -d "$set_dir" ]] || { echo "instructions.sh: no rule set $1 (run make bench-rules first)" >&2; exit 1; }
data=var/bench/events-0.05-n1000000-s42.jsonl
[[ -s "$data" ]] || { echo "instructions.sh: $data is missing (run make bench-rules first)" >&2; exit 1; }
out=var/bench/cachegrind
mkdir -p "$out"
head -n "$EVENTS" "$data" > "$out/events.jsonl"
for bin in "$@"; do
    name=$(basename "$bin")
    file="$out/$name.$(basename "$set_dir").out"
    valgrind --tool=cachegrind --cache-sim="$CACHE" --LL=33554432,16,64 \
        --cachegrind-out-file="$file" "$bin" run --rules "$set_dir" \
        --input "$out/events.jsonl" --output "$out/$name.alerts.jsonl" --workers 1 \
        2> "$out/$name.log" >/dev/null || { tail -n 20 "$out/$name.log" >&2; exit 1; }
    ir=$(grep -E "I +refs" "$out/$name.log" | awk '{gsub(",", "", $NF); print $NF}')
    line="$name: $(awk -v n="$ir" 'BEGIN {printf "%.1f", n / 1e6}') M instructions"
    if [[ "$CACHE" == yes ]]; then
        misses=$(grep -E "LLd misses" "$out/$name.log" | awk '{gsub(",", "", $4); print $4}')
        line="$line, $(awk -v n="$misses" 'BEGIN {printf "%.2f", n / 1e6}') M last-level data misses"
    fi
    echo "$line ($file)"
done
