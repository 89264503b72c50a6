# Sourced by the logging sidecar's measurement scripts (with $root set to the project):
# builds the release binaries into $bin, makes a work directory $work, and at exit stops
# every process listed in $pids and removes $work. free_port prints a free loopback port.
echo "$(basename "$0"): building the release binaries (cargo build --release -p logging-sidecar)..." >&2
cargo build --release --quiet -p logging-sidecar
bin="${CARGO_TARGET_DIR:-$root/target}/release"
work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
