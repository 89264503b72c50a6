#!/usr/bin/env bash
# Runs the whole topology as local processes, without Docker, on the contract's host
# ports: the log aggregator, the three services, and a logging and a metrics sidecar
# beside each. Logs, checkpoints and the store live under ./run (RUN_DIR). Ctrl-C (or
# SIGTERM) stops everything cleanly and leaves no process behind.
#
# Ports follow the same variables as .env: LOG_AGGREGATOR_PORT (8000),
# USER_SERVICE_PORT (8081), PRODUCT_SERVICE_PORT (8082), ORDER_SERVICE_PORT (8083),
# USER_METRICS_PORT (9091), PRODUCT_METRICS_PORT (9092), ORDER_METRICS_PORT (9093);
# the logging sidecars' own health/metrics ports are USER_LOGGING_PORT (9101),
# PRODUCT_LOGGING_PORT (9102), ORDER_LOGGING_PORT (9103).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUN_DIR=${RUN_DIR:-$ROOT/run}
BIN=${BIN_DIR:-$ROOT/target/release}
ENVIRONMENT=${ENVIRONMENT:-development}
SCRAPE_INTERVAL=${SCRAPE_INTERVAL:-10s}
export RUST_LOG=${RUST_LOG:-info}

declare -A PORT=(
  [log-aggregator]=${LOG_AGGREGATOR_PORT:-8000}
  [user-service]=${USER_SERVICE_PORT:-8081}
  [product-service]=${PRODUCT_SERVICE_PORT:-8082}
  [order-service]=${ORDER_SERVICE_PORT:-8083}
  [user-service-metrics-sidecar]=${USER_METRICS_PORT:-9091}
  [product-service-metrics-sidecar]=${PRODUCT_METRICS_PORT:-9092}
  [order-service-metrics-sidecar]=${ORDER_METRICS_PORT:-9093}
  [user-service-logging-sidecar]=${USER_LOGGING_PORT:-9101}
  [product-service-logging-sidecar]=${PRODUCT_LOGGING_PORT:-9102}
  [order-service-logging-sidecar]=${ORDER_LOGGING_PORT:-9103}
)
SERVICES=(user-service product-service order-service)

say() { printf '==> %s\n' "$*" >&2; }

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  say "Building the workspace in release mode (cargo build --release --workspace)..."
  cargo build --release --workspace --quiet
fi

for name in "${!PORT[@]}"; do
  port=${PORT[$name]}
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    say "Port $port (for $name) is already in use; stop what holds it or set the port variable."
    exit 1
  fi
done

mkdir -p "$RUN_DIR/data" "$RUN_DIR/pids"
declare -A PID=()

# stop_group NAME...: SIGTERM to those processes, then waits up to 15 s for them.
stop_group() {
  local pids=() name p
  for name in "$@"; do [[ -n ${PID[$name]:-} ]] && pids+=("${PID[$name]}"); done
  ((${#pids[@]})) || return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 1 150); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || return 0
    sleep 0.1
  done
  kill -KILL "${pids[@]}" 2>/dev/null || true
}

# Stops in the order that loses nothing: the services first (their last lines reach
# their log files), then the sidecars (which deliver what they have read while the
# aggregator still listens), then the aggregator.
stop_all() {
  trap - INT TERM EXIT
  if ((${#PID[@]})); then
    say "Stopping ${#PID[@]} processes: services, then sidecars, then the aggregator..."
    stop_group "${SERVICES[@]}"
    stop_group "${SERVICES[@]/%/-metrics-sidecar}" "${SERVICES[@]/%/-logging-sidecar}"
    stop_group log-aggregator
    wait 2>/dev/null || true
  fi
  say "Stopped. Logs, checkpoints and the store are kept in $RUN_DIR."
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME BINARY VAR=VALUE...: runs the binary with its stderr in $RUN_DIR/NAME.stderr.
start() {
  local name=$1 bin=$2
  shift 2
  if [[ ! -x $BIN/$bin ]]; then
    say "Skipping $name: $BIN/$bin was not built."
    return
  fi
  env "$@" LISTEN_ADDR="127.0.0.1:${PORT[$name]}" "$BIN/$bin" 2>>"$RUN_DIR/$name.stderr" &
  PID[$name]=$!
}

wait_healthy() {
  local name=$1 url="http://127.0.0.1:${PORT[$1]}/health"
  [[ -n ${PID[$name]:-} ]] || return 0
  for _ in $(seq 1 300); do
    if ! kill -0 "${PID[$name]}" 2>/dev/null; then
      say "$name exited during start-up; its log:"
      tail -n 20 "$RUN_DIR/$name.stderr" >&2
      exit 1
    fi
    if "$BIN/$2" healthcheck >/dev/null 2>&1 </dev/null; then return 0; fi
    sleep 0.1
  done
  say "$name did not become healthy at $url; see $RUN_DIR/$name.stderr"
  exit 1
}

say "Starting log-aggregator..."
start log-aggregator log-aggregator DATA_DIR="$RUN_DIR/data"
LISTEN_ADDR="127.0.0.1:${PORT[log-aggregator]}" wait_healthy log-aggregator log-aggregator

say "Starting the services..."
for svc in "${SERVICES[@]}"; do
  start "$svc" "$svc" LOG_FILE="$RUN_DIR/logs/$svc/app.log" ENVIRONMENT="$ENVIRONMENT" \
    USER_SERVICE_URL="http://127.0.0.1:${PORT[user-service]}" \
    PRODUCT_SERVICE_URL="http://127.0.0.1:${PORT[product-service]}"
done
for svc in "${SERVICES[@]}"; do
  LISTEN_ADDR="127.0.0.1:${PORT[$svc]}" wait_healthy "$svc" "$svc"
done

say "Starting the sidecars..."
for svc in "${SERVICES[@]}"; do
  start "$svc-logging-sidecar" logging-sidecar SERVICE_NAME="$svc" \
    LOG_PATH="$RUN_DIR/logs/$svc/app.log" STATE_DIR="$RUN_DIR/state/$svc" \
    AGGREGATOR_URL="http://127.0.0.1:${PORT[log-aggregator]}/logs" ENVIRONMENT="$ENVIRONMENT"
  start "$svc-metrics-sidecar" metrics-sidecar SERVICE_NAME="$svc" \
    APP_SERVICE_URL="http://127.0.0.1:${PORT[$svc]}" ENVIRONMENT="$ENVIRONMENT" \
    SCRAPE_INTERVAL="$SCRAPE_INTERVAL"
done
for svc in "${SERVICES[@]}"; do
  LISTEN_ADDR="127.0.0.1:${PORT[$svc-logging-sidecar]}" wait_healthy "$svc-logging-sidecar" logging-sidecar
  LISTEN_ADDR="127.0.0.1:${PORT[$svc-metrics-sidecar]}" wait_healthy "$svc-metrics-sidecar" metrics-sidecar
done

say "All ${#PID[@]} processes are up:"
for name in log-aggregator "${SERVICES[@]}" "${SERVICES[@]/%/-metrics-sidecar}" "${SERVICES[@]/%/-logging-sidecar}"; do
  [[ -n ${PID[$name]:-} ]] && printf '    %-33s http://127.0.0.1:%s\n' "$name" "${PORT[$name]}" >&2
done
say "Try: curl -s localhost:${PORT[user-service]}/users/1; curl -s 'localhost:${PORT[log-aggregator]}/logs?limit=5'"
say "Press Ctrl-C to stop."

# Stop everything as soon as any process ends on its own.
set +e
wait -n "${PID[@]}"
status=$?
for name in "${!PID[@]}"; do
  if ! kill -0 "${PID[$name]}" 2>/dev/null; then
    say "$name exited (status $status); stopping the rest. Its log: $RUN_DIR/$name.stderr"
  fi
done
exit 1
