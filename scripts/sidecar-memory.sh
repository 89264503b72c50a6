#!/usr/bin/env bash
# The logging sidecar's peak memory on hostile inputs: peak RSS (VmHWM, from
# /proc/<pid>/status) of the release binary forwarding into `counting-sink` (count mode),
# one fresh sidecar, sink and state directory per run, input prewritten before the start.
#
#   scripts/sidecar-memory.sh                 # every case, 3 runs each (about 2 minutes)
#   RUNS=5 scripts/sidecar-memory.sh
#   CASES="line-10MB mixed" scripts/sidecar-memory.sh
#   SIDECAR_ENV="READ_CHUNK_BYTES=262144 GZIP=true" scripts/sidecar-memory.sh
#
# Cases (each ends with one JSON line, so that its end is seen at the sink):
#   blank-128KiB   131,072 empty lines in one run (skipped, counted)
#   one-byte-100k  100,000 lines of `x`
#   empty-1M       1,000,000 empty lines
#   line-10MB      one line of 10,000,000 bytes (cut at MAX_LINE_BYTES)
#   json-1M        1,000,000 JSON lines of about 260 bytes
#   escape-64KiB   1,000 lines of 65,536 control bytes (0x01), each escaped to 6 bytes:
#                  the largest records a line can make (about 384 KiB each)
#   mixed          all of the above, one after the other, in one file
#   mixed-gzip     the same with GZIP=true
#   files-200      a glob over 200 files of 5,000 JSON lines each (1,000,000 lines)
#
# Target: under 16 MiB (16,384 KiB) on any input. Prints one row per case: the median
# and the largest VmHWM over the runs, the median time from start to the last record at
# the sink, and the largest POST seen (records, bytes). Exits 1 if any run went over the
# target (with default settings: other settings may need more, see
# docs/logging-sidecar.md).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
runs="${RUNS:-3}"
cases="${CASES:-blank-128KiB one-byte-100k empty-1M line-10MB escape-64KiB json-1M mixed mixed-gzip files-200}"
read -r -a extra_env <<<"${SIDECAR_ENV:-}"
# shellcheck source=lib/sidecar-release.sh
source "$root/scripts/lib/sidecar-release.sh"
wait_health() {
    for _ in $(seq 100); do
        curl -fsS "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "sidecar-memory.sh: nothing answers on port $1" >&2
    return 1
}

# The inputs, written once. Each generator prints its lines; `records` is what the
# sidecar forwards of them.
input="$work/input"
mkdir -p "$input"
end_line() { echo '{"level":"INFO","message":"end of input"}'; }
gen_blank() { head -c 131072 /dev/zero | tr '\0' '\n'; }
gen_one_byte() { awk 'BEGIN { for (i = 0; i < 100000; i++) print "x" }'; }
gen_empty() { head -c 1000000 /dev/zero | tr '\0' '\n'; }
gen_long() { head -c 10000000 /dev/zero | tr '\0' 'a'; echo; }
gen_escape() { awk 'BEGIN { s = "\001"; while (length(s) < 65536) s = s s; for (i = 0; i < 1000; i++) print s }'; }
# A service's request log line, about 260 bytes.
gen_json() {
    awk -v n="$1" -v tag="$2" 'BEGIN {
        for (i = 0; i < n; i++)
            printf "{\"timestamp\":\"2026-12-07T12:00:00.000000Z\",\"service\":\"memory-bench\",\"level\":\"INFO\",\"message\":\"GET /users/%d 200\",\"status\":200,\"duration_ms\":1.25,\"request_id\":\"%s-%08x-4e2b-9c1d-2f6a8b3e7d40\",\"user_agent\":\"curl/8.5.0\",\"path\":\"/users/%d\",\"seq\":%d}\n", i % 1000, tag, i, i % 1000, i
    }'
}
{ gen_blank; end_line; } >"$input/blank-128KiB.log"
{ gen_one_byte; end_line; } >"$input/one-byte-100k.log"
{ gen_empty; end_line; } >"$input/empty-1M.log"
{ gen_long; end_line; } >"$input/line-10MB.log"
{ gen_escape; end_line; } >"$input/escape-64KiB.log"
{ gen_json 1000000 a; end_line; } >"$input/json-1M.log"
{ gen_blank; gen_one_byte; gen_empty; gen_long; gen_escape; gen_json 1000000 m; end_line; } >"$input/mixed.log"
mkdir -p "$input/files-200"
for i in $(seq 200); do gen_json 5000 "f$i" >"$input/files-200/app$i.log"; done

records_of() {
    case "$1" in
    blank-128KiB | empty-1M) echo 1 ;;
    one-byte-100k) echo 100001 ;;
    line-10MB) echo 2 ;;
    escape-64KiB) echo 1001 ;;
    json-1M) echo 1000001 ;;
    mixed | mixed-gzip) echo 1101002 ;;
    files-200) echo 1000000 ;;
    *)
        echo "sidecar-memory.sh: unknown case $1" >&2
        return 1
        ;;
    esac
}

# One run: prints "vmhwm_kib seconds max_batch_records max_batch_bytes".
run_case() {
    local case="$1" n="$2" dir="$work/run-$1-$2" path env=()
    mkdir -p "$dir/state"
    case "$case" in
    files-200) path="$input/files-200/*.log" ;;
    mixed-gzip)
        path="$input/mixed.log"
        env+=(GZIP=true)
        ;;
    *) path="$input/$case.log" ;;
    esac
    local want sink_port port sink pid start got stats
    want="$(records_of "$case")"
    sink_port="$(free_port)"
    LISTEN_ADDR="127.0.0.1:$sink_port" SINK_MODE=count "$bin/counting-sink" 2>"$dir/sink.stderr" &
    sink=$!
    pids+=("$sink")
    wait_health "$sink_port"
    port="$(free_port)"
    start="$(date +%s.%N)"
    env "${env[@]}" "${extra_env[@]}" LOG_PATH="$path" STATE_DIR="$dir/state" RUST_LOG=warn \
        AGGREGATOR_URL="http://127.0.0.1:$sink_port/logs" LISTEN_ADDR="127.0.0.1:$port" \
        "$bin/logging-sidecar" 2>"$dir/sidecar.stderr" &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 12000); do
        stats="$(curl -fsS "http://127.0.0.1:$sink_port/stats" 2>/dev/null || true)"
        got="$(sed -n 's/.*"received":\([0-9]*\).*/\1/p' <<<"$stats")"
        [ "${got:-0}" -ge "$want" ] && break
        kill -0 "$pid" 2>/dev/null || {
            echo "sidecar-memory.sh: the sidecar exited during $case; its log:" >&2
            cat "$dir/sidecar.stderr" >&2
            return 1
        }
        sleep 0.01
    done
    if [ "${got:-0}" -lt "$want" ]; then
        echo "sidecar-memory.sh: $case: ${got:-0} of $want records after 120 s" >&2
        return 1
    fi
    local secs hwm
    secs="$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')"
    hwm="$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")"
    kill "$pid" "$sink"
    wait "$pid" "$sink" 2>/dev/null || true
    rm -rf "$dir"
    echo "$hwm $secs $(sed -n 's/.*"max_batch_records":\([0-9]*\).*/\1/p' <<<"$stats") \
$(sed -n 's/.*"max_batch_bytes":\([0-9]*\).*/\1/p' <<<"$stats")"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "runs per case: $runs; load: $(cut -d' ' -f1-3 /proc/loadavg); extra settings: ${SIDECAR_ENV:-none}"
printf '%-14s %9s %12s %12s %10s %9s %13s\n' case records "vmhwm_kib" "max_kib" "seconds" \
    "max_recs" "max_post_b"
target_kib=16384
over=0
for case in $cases; do
    results=()
    for n in $(seq "$runs"); do
        results+=("$(run_case "$case" "$n")")
    done
    printf '%s\n' "${results[@]}" >"$work/results"
    printf '%-14s %9s %12s %12s %10s %9s %13s\n' "$case" "$(records_of "$case")" \
        "$(awk '{print $1}' "$work/results" | median)" \
        "$(awk '{print $1}' "$work/results" | sort -n | tail -1)" \
        "$(awk '{print $2}' "$work/results" | median)" \
        "$(awk '{print $3}' "$work/results" | sort -n | tail -1)" \
        "$(awk '{print $4}' "$work/results" | sort -n | tail -1)"
    top="$(awk '{print $1}' "$work/results" | sort -n | tail -1)"
    [ "$top" -le "$target_kib" ] || over=1
done
if [ "$over" = 1 ]; then
    echo "sidecar-memory.sh: a case went over $target_kib KiB" >&2
    exit 1
fi
