#!/usr/bin/env bash
# System test of the whole stack in Docker, as a user meets it.
#
# 1. Brings the stack up (scripts/compose.sh up -d --build), or reuses a running one.
# 2. Checks every endpoint of the contract: services, aggregator, both kinds of sidecar,
#    and, where a promtool is at hand, that every /metrics passes `promtool check metrics`.
# 3. Sends traffic with unique request ids and asserts that every request log reached the
#    aggregator exactly once with the enrichment fields, that one request can be followed
#    across the three services, and that the metrics sidecars serve enriched samples.
# 4. Kills (docker kill, i.e. SIGKILL) a logging sidecar and then the aggregator while
#    traffic flows, and a service, brings each back, and asserts that no request log was
#    lost or stored twice.
# 5. Clears the aggregator (only a stack it brought up itself), then takes the stack down
#    with its volumes (unless it reused a running one, or KEEP_STACK=1).
#
# Exits non-zero with a message naming the failed check; on failure it prints the recent
# container logs first.
#
# Also starts the `prometheus` profile's Prometheus (unless TEST_PROMETHEUS=0) and checks
# that it scrapes the metrics sidecars.
#
# With --profile cluster it tests the `cluster` profile instead (docs/scale-out.md): two
# aggregators over one ClickHouse server. Every aggregator check then runs through both, a
# record sent through one must be read through the other and its retry there stored once,
# every request log must be found exactly once through each, and the kills also take the
# second aggregator and ClickHouse itself while traffic flows.
#
# Settings (environment): TRAFFIC (requests per traffic set, default 150), KEEP_STACK=1,
# UP_TIMEOUT (seconds to wait for a healthy stack, default 180), DELIVERY_TIMEOUT (seconds
# for logs to reach the aggregator, default 120), and the stack's own variables (ports,
# ENVIRONMENT, AGGREGATOR_TOKEN), read from .env when it exists, as compose does.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

cluster=0
case "${1:-}" in
    "") ;;
    --profile)
        [ "${2:-}" = cluster ] || { echo "test-system: only --profile cluster is a stack of its own" >&2; exit 2; }
        cluster=1
        ;;
    *) echo "test-system: unknown argument $1 (expected nothing or --profile cluster)" >&2; exit 2 ;;
esac

TRAFFIC="${TRAFFIC:-150}"
KEEP_STACK="${KEEP_STACK:-0}"
UP_TIMEOUT="${UP_TIMEOUT:-180}"
DELIVERY_TIMEOUT="${DELIVERY_TIMEOUT:-120}"
# Paced traffic during the kills: a component dies while records are in flight.
readonly KILL_RATE=100
CONTAINERS=(
    log-aggregator
    user-service user-service-logging-sidecar user-service-metrics-sidecar
    product-service product-service-logging-sidecar product-service-metrics-sidecar
    order-service order-service-logging-sidecar order-service-metrics-sidecar
)
profile=()
if [ "$cluster" = 1 ]; then
    CONTAINERS+=(clickhouse log-aggregator-2)
    profile=(--profile cluster)
    # Every compose call below (and systemcheck.py) addresses the cluster.
    export COMPOSE_PROFILES=cluster TEST_CLUSTER=1
fi
readonly CONTAINERS

started=$SECONDS
step_no=0
step() {
    step_no=$((step_no + 1))
    printf '\n==> [%d] %s (at %d s)\n' "$step_no" "$*" "$((SECONDS - started))"
}
note() { echo "  ..   $*"; }
die() {
    echo "  FAIL $*" >&2
    exit 1
}
check() { python3 "$root/scripts/systemcheck.py" "$@" || die "check '$1' failed (see above)"; }

# The same values compose sees: .env when present, else the defaults; in the cluster, the
# profile's settings first (scripts/compose.sh reads them in the same order).
if [ "$cluster" = 1 ]; then
    while IFS= read -r line; do
        [[ "$line" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || continue
        key="${line%%=*}"
        [ -n "${!key+set}" ] || export "$line"
    done <docker/cluster.env
fi
if [ -f .env ]; then
    while IFS= read -r line; do
        [[ "$line" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || continue
        key="${line%%=*}"
        [ -n "${!key+set}" ] || export "$line"
    done <.env
fi

for tool in docker curl python3; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
docker info >/dev/null 2>&1 || die "no Docker engine answers (docker info failed)"

export TEST_RUN_ID="sys$(date +%s)$$"
export TEST_STATE_DIR
TEST_STATE_DIR="$(mktemp -d "${TMPDIR:-/tmp}/test-system.XXXXXX")"
brought_up=0
started_prometheus=0
traffic_pid=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$traffic_pid" ]; then kill "$traffic_pid" 2>/dev/null || true; fi
    if [ "$rc" != 0 ]; then
        echo
        echo "==> Diagnostics: container states and recent logs"
        for c in "${CONTAINERS[@]}"; do
            docker inspect -f '  {{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}} exit={{.State.ExitCode}}' "$c" 2>/dev/null || echo "  /$c missing"
        done
        for c in "${CONTAINERS[@]}"; do
            echo "--- $c (last 15 lines)"
            docker logs --tail 15 "$c" 2>&1 | sed 's/^/    /' || true
        done
    fi
    if [ "$brought_up" = 1 ] && [ "$KEEP_STACK" != 1 ]; then
        echo
        echo "==> Taking the stack down with its volumes"
        scripts/compose.sh --profile prometheus --profile cluster down -v --remove-orphans >/dev/null 2>&1 || echo "  (compose down failed)"
    elif [ "$started_prometheus" = 1 ] && [ "$KEEP_STACK" != 1 ]; then
        scripts/compose.sh --profile prometheus rm -sfv prometheus >/dev/null 2>&1 || true
    fi
    rm -rf "$TEST_STATE_DIR"
    echo
    if [ "$rc" = 0 ]; then
        echo "test-system: PASS in $((SECONDS - started)) s"
    else
        echo "test-system: FAIL (exit $rc) after $((SECONDS - started)) s" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits for one container to run and report healthy.
await_healthy() {
    local name="$1" timeout="${2:-60}" t0=$SECONDS state
    while :; do
        state="$(docker inspect -f '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$name" 2>/dev/null || echo missing)"
        case "$state" in
            "running healthy" | "running none") return 0 ;;
        esac
        [ $((SECONDS - t0)) -lt "$timeout" ] || die "$name is not healthy after ${timeout} s (state: $state)"
        sleep 1
    done
}

# Waits until the traffic set being written has at least N answered requests.
await_traffic() {
    local set="$1" n="$2" t0=$SECONDS file="$TEST_STATE_DIR/set-$1.jsonl"
    while [ "$(cat "$file" 2>/dev/null | wc -l)" -lt "$n" ]; do
        kill -0 "$traffic_pid" 2>/dev/null || die "traffic set $set ended before $n requests were answered"
        [ $((SECONDS - t0)) -lt 30 ] || die "traffic set $set: fewer than $n requests answered in 30 s"
        sleep 0.2
    done
}

finish_traffic() {
    wait "$traffic_pid" || die "traffic set $1 failed"
    traffic_pid=""
}

# Kills a container with SIGKILL, as a crash would, and checks that it stayed down.
kill_container() {
    docker kill "$1" >/dev/null || die "docker kill $1 failed"
    note "killed $1 (SIGKILL)"
}

restart_container() {
    docker start "$1" >/dev/null || die "docker start $1 failed"
    await_healthy "$1" 60
    note "$1 is back and healthy"
}

# --- 1. the stack --------------------------------------------------------------------------
step "Stack"
running=0
for c in "${CONTAINERS[@]}"; do
    if [ "$(docker inspect -f '{{.State.Running}}' "$c" 2>/dev/null)" = true ]; then running=$((running + 1)); fi
done
if [ "$running" = "${#CONTAINERS[@]}" ]; then
    note "reusing the running stack (it stays up afterwards)"
    # Whatever checkout started it: compose commands below must address its project.
    project="$(docker inspect -f '{{index .Config.Labels "com.docker.compose.project"}}' log-aggregator 2>/dev/null || true)"
    if [ -n "$project" ]; then export COMPOSE_PROJECT_NAME="$project"; fi
    for c in "${CONTAINERS[@]}"; do await_healthy "$c" "$UP_TIMEOUT"; done
else
    [ "$running" = 0 ] || note "$running of ${#CONTAINERS[@]} containers are running: bringing the stack up"
    brought_up=1
    note "building and starting it (a first run compiles the release binaries: minutes)"
    t0=$SECONDS
    if ! scripts/compose.sh "${profile[@]}" up -d --build >"$TEST_STATE_DIR/up.log" 2>&1; then
        tail -n 40 "$TEST_STATE_DIR/up.log" | sed 's/^/       /'
        die "compose up failed"
    fi
    grep -E '^(compose|docker-base-images):|^Creating [a-z-]+ +\.\.\. done' "$TEST_STATE_DIR/up.log" | sed 's/^/  ..   /' || true
    build_up=$((SECONDS - t0))
    t0=$SECONDS
    for c in "${CONTAINERS[@]}"; do await_healthy "$c" "$UP_TIMEOUT"; done
    note "build and up: ${build_up} s; then all ${#CONTAINERS[@]} containers healthy after $((SECONDS - t0)) s more"
fi

# --- 2. every endpoint ---------------------------------------------------------------------
step "Endpoints of the contract"
check endpoints

if [ "$cluster" = 1 ]; then
    step "One store behind both aggregators: sent through one, read through the other"
    check cross
fi

step "Metrics exposition checked by promtool"
promtool=()
if command -v promtool >/dev/null; then
    promtool=(promtool)
else
    for image in "${PROMETHEUS_IMAGE:-}" sidecar-obs/prometheus:bookworm prom/prometheus:v2.53.0; do
        if [ -n "$image" ] && docker image inspect "$image" >/dev/null 2>&1; then
            promtool=(docker run --rm -i --network none --entrypoint /bin/promtool "$image")
            break
        fi
    done
fi
if [ "${#promtool[@]}" = 0 ]; then
    note "no promtool here (neither on the host nor in a Prometheus image): skipped"
else
    for target in user-service product-service order-service aggregator \
        user-service-metrics-sidecar product-service-metrics-sidecar order-service-metrics-sidecar \
        user-service-logging-sidecar product-service-logging-sidecar order-service-logging-sidecar; do
        out="$(check promtool-input "$target" | "${promtool[@]}" check metrics 2>&1)" ||
            die "promtool check metrics rejects the /metrics of $target: $out"
        echo "  ok   $target: /metrics passes promtool check metrics"
    done
fi

# --- 3. logs and metrics flow --------------------------------------------------------------
step "Traffic, then every request log in the aggregator exactly once, enriched"
check traffic baseline "$TRAFFIC"
check delivered baseline --timeout "$DELIVERY_TIMEOUT"

step "One request id followed across services"
check follow

step "Metrics sidecars serve enriched samples"
check metrics --timeout 60

step "A real Prometheus scrapes the metrics sidecars (compose profile prometheus)"
if [ "${TEST_PROMETHEUS:-1}" = 0 ]; then
    note "TEST_PROMETHEUS=0: skipped"
elif [ "$(docker inspect -f '{{.State.Running}}' prometheus 2>/dev/null)" = true ]; then
    note "reusing the running Prometheus"
    check prometheus --timeout 60
else
    started_prometheus=1
    scripts/compose.sh --profile prometheus up -d --no-deps prometheus >"$TEST_STATE_DIR/prometheus.log" 2>&1 ||
        die "could not start Prometheus: $(tail -n 5 "$TEST_STATE_DIR/prometheus.log")"
    await_healthy prometheus 60
    check prometheus --timeout 60
fi

# --- 4. crashes ----------------------------------------------------------------------------
step "Kill a logging sidecar while traffic flows, bring it back"
python3 scripts/systemcheck.py traffic sidecar-kill "$((TRAFFIC * 2))" --rate "$KILL_RATE" &
traffic_pid=$!
await_traffic sidecar-kill "$((TRAFFIC / 2))"
kill_container user-service-logging-sidecar
finish_traffic sidecar-kill
restart_container user-service-logging-sidecar

step "Kill the aggregator while traffic flows, bring it back"
python3 scripts/systemcheck.py traffic aggregator-kill "$((TRAFFIC * 2))" --rate "$KILL_RATE" &
traffic_pid=$!
await_traffic aggregator-kill "$((TRAFFIC / 2))"
kill_container log-aggregator
finish_traffic aggregator-kill
restart_container log-aggregator

sets=(baseline sidecar-kill aggregator-kill)
if [ "$cluster" = 1 ]; then
    step "Kill the second aggregator while traffic flows, bring it back"
    python3 scripts/systemcheck.py traffic aggregator-2-kill "$((TRAFFIC * 2))" --rate "$KILL_RATE" &
    traffic_pid=$!
    await_traffic aggregator-2-kill "$((TRAFFIC / 2))"
    kill_container log-aggregator-2
    finish_traffic aggregator-2-kill
    restart_container log-aggregator-2

    # Both aggregators answer 503 while it is down; the sidecars keep the records and retry.
    step "Kill ClickHouse while traffic flows, bring it back"
    python3 scripts/systemcheck.py traffic clickhouse-kill "$((TRAFFIC * 2))" --rate "$KILL_RATE" &
    traffic_pid=$!
    await_traffic clickhouse-kill "$((TRAFFIC / 2))"
    kill_container clickhouse
    finish_traffic clickhouse-kill
    restart_container clickhouse
    sets+=(aggregator-2-kill clickhouse-kill)
fi

step "Kill a service, bring it back, send more traffic"
kill_container product-service
restart_container product-service
check traffic after-service-kill "$TRAFFIC"
sets+=(after-service-kill)

step "Nothing lost, nothing stored twice, across all the kills"
check delivered "${sets[@]}" --timeout "$DELIVERY_TIMEOUT"

# --- 5. clear ------------------------------------------------------------------------------
if [ "$brought_up" = 1 ]; then
    step "Clear the aggregator"
    check clear
fi
