#!/usr/bin/env bash
# The whole-system benchmarks, reproduced by one command and printed as one table.
#
#   scripts/bench.sh              # every figure, median of 3 runs (under 15 minutes)
#   scripts/bench.sh --quick      # rough figures, one short run each (under 2 minutes)
#   scripts/bench.sh --json new.json
#   scripts/bench.sh --compare base.json new.json
#   scripts/bench.sh --clickhouse [--quick]  # the ClickHouse store: ingest through one and
#                                  # two aggregators into a local clickhouse-server, beside
#                                  # the embedded store (docs/scale-out.md; about 3 minutes, 200,000 records)
#
# It builds what it needs in release mode (saying so), runs every process on loopback
# ports that are free at the time, and stops all of them on exit, Ctrl-C included.
# BENCHMARKS.md explains each figure. The work is done by tools/benchrun.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if [ "${1:-}" = --clickhouse ]; then
    shift
    if ! command -v clickhouse-server >/dev/null && [ ! -x /usr/sbin/clickhouse-server ] && [ -z "${CLICKHOUSE_SERVER:-}" ]; then
        echo "bench.sh: clickhouse-server is not installed: apt-get install clickhouse-server (scripts/test.sh installs it)." >&2
        exit 1
    fi
    echo "bench.sh: building the aggregator and its ClickHouse benchmark in release mode..." >&2
    cargo build --release --locked -p log-aggregator --bin log-aggregator --example clickhouse_bench
    exec "${CARGO_TARGET_DIR:-$root/target}/release/examples/clickhouse_bench" "$@"
fi

# The whole workspace, as scripts/run-local.sh builds it: the harness, the services,
# loadgen and whichever components have landed. The harness then builds the benchmark
# examples it finds.
case " $* " in
*" --compare "* | *" --help "* | *" -h "*) build=(cargo build --release --quiet -p benchrun) ;;
*)
    build=(cargo build --release --workspace)
    echo "bench.sh: building the workspace in release mode (${build[*]})..." >&2
    ;;
esac
if ! "${build[@]}"; then
    echo "bench.sh: the build failed; see the messages above." >&2
    exit 1
fi
exec "${CARGO_TARGET_DIR:-$root/target}/release/benchrun" "$@"
