#!/usr/bin/env bash
# The whole-system benchmarks, reproduced by one command and printed as one table.
#
#   scripts/bench.sh              # every figure, median of 3 runs (under 15 minutes)
#   scripts/bench.sh --quick      # rough figures, one short run each (under 2 minutes)
#   scripts/bench.sh --json new.json
#   scripts/bench.sh --compare base.json new.json
#
# It builds what it needs in release mode (saying so), runs every process on loopback
# ports that are free at the time, and stops all of them on exit, Ctrl-C included.
# BENCHMARKS.md explains each figure. The work is done by tools/benchrun.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

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
