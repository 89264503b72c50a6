#!/usr/bin/env bash
# Traffic for a running stack (Docker or local): every endpoint of the three services,
# at a chosen rate, concurrency and duration. The work is done by the `loadgen` binary
# of this workspace, built in release mode here when it is missing or older than its
# sources. All flags go to loadgen; see `scripts/load.sh --help`.
#
#   scripts/load.sh                              # 1000 req/s for 10 s on the default ports
#   scripts/load.sh --rate 5000 --duration 30s
#   scripts/load.sh --rate 0 --concurrency 128   # as fast as the services answer
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
bin="$target_dir/release/loadgen"

needs_build() {
    [[ ! -x "$bin" ]] && return 0
    # Rebuild when any source of loadgen (or the shared crate it uses) is newer.
    [[ -n "$(find "$root/tools/loadgen" "$root/shared/src" "$root/Cargo.lock" \
        -newer "$bin" -type f -print -quit 2>/dev/null)" ]]
}

if needs_build; then
    echo "load.sh: building loadgen (cargo build --release -p loadgen)..." >&2
    if ! cargo build --release -p loadgen --manifest-path "$root/Cargo.toml" >&2; then
        echo "load.sh: the build failed; see the messages above." >&2
        exit 1
    fi
    # cargo leaves an up-to-date binary untouched; mark it current so the next run
    # does not call cargo again for a change (say, to Cargo.lock) that did not affect it.
    touch "$bin"
fi

exec "$bin" "$@"
