#!/usr/bin/env bash
# Sends REQUESTS requests (default 300) to a running stack: GET /users/{id},
# GET /products/{id} and POST /orders in turn, four at a time, each with its own
# X-Request-Id (load-<time>-...), so that any of them can be looked up in the aggregator:
#   curl 'http://localhost:8000/logs?request_id=<id>'
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
requests="${1:-300}"
[[ "$requests" =~ ^[0-9]+$ ]] || { echo "load: REQUESTS must be a number, got $requests" >&2; exit 2; }
if [ -f "$root/.env" ]; then
    while IFS= read -r line; do
        [[ "$line" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || continue
        key="${line%%=*}"
        [ -n "${!key+set}" ] || export "$line"
    done <"$root/.env"
fi
export TEST_RUN_ID="load-$(date +%s)" TEST_STATE_DIR
TEST_STATE_DIR="$(mktemp -d "${TMPDIR:-/tmp}/load.XXXXXX")"
trap 'rm -rf "$TEST_STATE_DIR"' EXIT
start=$(date +%s.%N)
python3 "$root/scripts/systemcheck.py" traffic load "$requests"
end=$(date +%s.%N)
awk -v n="$requests" -v s="$start" -v e="$end" 'BEGIN { printf "  %d requests in %.2f s (%.0f/s); request ids start with %s\n", n, e - s, n / (e - s), ENVIRON["TEST_RUN_ID"] }'
