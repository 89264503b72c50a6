#!/usr/bin/env bash
# Builds what the Docker stack needs on this machine (with or without an image registry),
# starts it in the background and waits until every container is healthy.
#
#   scripts/up.sh                       the stack
#   scripts/up.sh --profile prometheus  the stack and a Prometheus scraping the sidecars
#   scripts/up.sh --profile cluster     two aggregators over one ClickHouse server, the
#                                       sidecars spread over them (docs/scale-out.md)
#
# Stop it with `scripts/compose.sh down` (add -v to delete the stored logs too).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=()
if [ "${1:-}" = --profile ]; then
    [ -n "${2:-}" ] || { echo "up: --profile needs a name" >&2; exit 2; }
    profile=(--profile "$2")
fi
scripts/compose.sh "${profile[@]}" up -d --build
scripts/compose.sh "${profile[@]}" wait
cat <<URLS

The stack is up:
  log aggregator   http://localhost:${LOG_AGGREGATOR_PORT:-8000}/logs
  services         http://localhost:${USER_SERVICE_PORT:-8081}/users  http://localhost:${PRODUCT_SERVICE_PORT:-8082}/products  http://localhost:${ORDER_SERVICE_PORT:-8083}/orders
  enriched metrics http://localhost:${USER_METRICS_PORT:-9091}/metrics  :${PRODUCT_METRICS_PORT:-9092}  :${ORDER_METRICS_PORT:-9093}
URLS
if [ "${2:-}" = cluster ]; then
    cat <<URLS
  2nd aggregator   http://localhost:${LOG_AGGREGATOR_2_PORT:-8001}/logs  (the same records, one ClickHouse)
  ClickHouse       curl 'http://localhost:${CLICKHOUSE_PORT:-8123}/?query=SELECT+count()+FROM+logs+FINAL'
URLS
fi
