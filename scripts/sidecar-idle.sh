#!/usr/bin/env bash
# The logging sidecar's idle cost: CPU (% of one core) and peak RSS of a sidecar that
# follows quiet files, one file and 200 files (a glob), with file events (the default,
# WATCH_MODE=events) and with polling only (WATCH_MODE=poll), for comparison.
#
#   scripts/sidecar-idle.sh            # 30 s per case
#   SECONDS_PER_CASE=120 scripts/sidecar-idle.sh
#
# Targets (issue 10): at most 0.1 % of a core with one quiet file, 1 % with 200.
# Builds the release binaries it needs, runs them on loopback, stops them on exit.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
secs="${SECONDS_PER_CASE:-30}"
# shellcheck source=lib/sidecar-release.sh
source "$root/scripts/lib/sidecar-release.sh"
# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

sink_port="$(free_port)"
LISTEN_ADDR="127.0.0.1:$sink_port" "$bin/counting-sink" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$sink_port/health" >/dev/null 2>&1 && break
    sleep 0.1
done

hz="$(getconf CLK_TCK)"
printf '%-8s %-7s %10s %12s\n' mode files "cpu_%core" "vmhwm_kib"
for mode in events poll; do
    for n in 1 200; do
        dir="$work/$mode-$n"
        mkdir -p "$dir/logs" "$dir/state"
        for i in $(seq "$n"); do
            echo '{"message":"hello"}' >"$dir/logs/app$i.log"
        done
        if [ "$n" = 1 ]; then path="$dir/logs/app1.log"; else path="$dir/logs/*.log"; fi
        port="$(free_port)"
        WATCH_MODE="$mode" LOG_PATH="$path" STATE_DIR="$dir/state" RUST_LOG=warn \
            AGGREGATOR_URL="http://127.0.0.1:$sink_port/logs" LISTEN_ADDR="127.0.0.1:$port" \
            "$bin/logging-sidecar" 2>"$dir/stderr" &
        pid=$!
        pids+=("$pid")
        # Settled: every file read and acknowledged, then a quiet moment.
        for _ in $(seq 300); do
            lag="$(curl -fsS "http://127.0.0.1:$port/metrics" 2>/dev/null |
                awk '/^logging_sidecar_records_forwarded_total/ {print $2}')"
            [ "${lag:-0}" -ge "$n" ] 2>/dev/null && break
            sleep 0.1
        done
        sleep 2
        before="$(cpu_ticks "$pid")"
        sleep "$secs"
        after="$(cpu_ticks "$pid")"
        hwm="$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")"
        kill "$pid"
        wait "$pid" 2>/dev/null || true
        awk -v t=$((after - before)) -v hz="$hz" -v s="$secs" -v m="$mode" -v n="$n" -v h="$hwm" \
            'BEGIN { printf "%-8s %-7s %10.3f %12s\n", m, n, 100 * t / hz / s, h }'
    done
done
