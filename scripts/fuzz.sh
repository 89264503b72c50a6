#!/usr/bin/env bash
# Fuzzes every parser a client or a file can reach, with cargo-fuzz (libFuzzer):
#
#   aggregator_body      a POST /logs body: framing, gzip, records, limits
#   aggregator_record    one record: JSON object check, indexed fields, received_at
#   aggregator_query     a GET /logs query string: parameters, search words, cursor
#   metrics_exposition   a scraped exposition through the metrics sidecar's relabeler
#   logging_lines        a log file chunk through the logging sidecar's line splitter
#   logging_enrich       log lines through the logging sidecar's enricher
#
#   scripts/fuzz.sh --ci                  # each target for 20 s (CI; about 2 minutes
#                                         # after the first build of fuzz/)
#   scripts/fuzz.sh --seconds 600         # each target for 10 minutes
#   scripts/fuzz.sh --runs 10000000       # the long run: 10 million inputs per target
#   scripts/fuzz.sh --runs 1000 logging_lines aggregator_query   # some targets only
#
# Each target starts from its seeds in fuzz/corpus/<target>/seed-* (kept in the
# repository); what libFuzzer finds on the way goes to a working corpus under
# fuzz/target/ (CI) or fuzz/corpus/<target>/ (long runs, not committed). A crash leaves
# its input in fuzz/artifacts/<target>/ and fails the run; replay it with
# `RUSTC_BOOTSTRAP=1 cargo fuzz run -s none -a <target> fuzz/artifacts/<target>/<file>`.
#
# cargo-fuzz needs nightly Rust's -Z flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain
# accept them. No sanitizer (-s none): the fuzzed code has no `unsafe`, so
# AddressSanitizer would only slow the runs; debug assertions (-a) are on, so an
# arithmetic overflow is a crash. cargo-fuzz is installed from crates.io when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*" >&2; }

CARGO_FUZZ_VERSION=0.13.2
ALL_TARGETS=(aggregator_body aggregator_record aggregator_query metrics_exposition logging_lines logging_enrich)

seconds=
runs=
ci=0
targets=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --ci) ci=1; seconds=${FUZZ_SECONDS:-20} ;;
        --seconds) seconds=$2; shift ;;
        --runs) runs=$2; shift ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        -*) say "unknown option $1"; exit 64 ;;
        *) targets+=("$1") ;;
    esac
    shift
done
[[ ${#targets[@]} -gt 0 ]] || targets=("${ALL_TARGETS[@]}")
if [[ -z $seconds && -z $runs ]]; then
    say "say how long: --ci, --seconds N or --runs N (see --help)"
    exit 64
fi

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    say "Installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io..."
    cargo install --quiet --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

export RUSTC_BOOTSTRAP=1
fuzz=(cargo fuzz)
flags=(-s none -a)
say "Building the fuzz targets (fuzz/, a workspace of its own)..."
(cd fuzz && "${fuzz[@]}" build "${flags[@]}")

summary=()
failed=0
for target in "${targets[@]}"; do
    if [[ $ci == 1 ]]; then
        work="fuzz/target/ci-corpus/$target"
        rm -rf "$work"
    else
        work="fuzz/corpus/$target"
    fi
    mkdir -p "$work" "fuzz/artifacts/$target"
    args=(-print_final_stats=1 -rss_limit_mb=2048 -timeout=10)
    [[ -n $seconds ]] && args+=(-max_total_time="$seconds")
    [[ -n $runs ]] && args+=(-runs="$runs")
    say "Fuzzing $target (${seconds:+${seconds}s}${runs:+$runs runs})..."
    log="fuzz/target/$target.log"
    mkdir -p fuzz/target
    status=0
    (cd fuzz && "${fuzz[@]}" run "${flags[@]}" "$target" "../$work" "corpus/$target" -- "${args[@]}") \
        >"$log" 2>&1 || status=$?
    execs=$(grep -a -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
    time_s=$(grep -a -o 'Done [0-9]* runs in [0-9]* second' "$log" | grep -o 'in [0-9]*' | grep -o '[0-9]*' | tail -1 || true)
    if [[ $status == 0 ]]; then
        summary+=("$target: ${execs:-?} executions in ${time_s:-?} s, 0 crashes")
    else
        failed=1
        summary+=("$target: FAILED after ${execs:-?} executions (status $status); see $log and fuzz/artifacts/$target/")
        grep -a -A2 -E 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written' "$log" | head -30 >&2 || true
    fi
done
say "Fuzzing summary:"
printf '    %s\n' "${summary[@]}" >&2
exit $failed
