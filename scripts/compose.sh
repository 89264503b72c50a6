#!/usr/bin/env bash
# Runs docker compose for this project on any machine, with or without an image registry.
#
#   scripts/compose.sh up -d --build     build the images, start the stack
#   scripts/compose.sh wait [SECONDS]    wait until every container of the stack is healthy
#   scripts/compose.sh <anything else>   passed to compose (ps, logs -f, down -v, ...)
#
# It finds the compose tool (the `docker compose` plugin or the `docker-compose` program)
# and picks how images are built (IMAGE_SOURCE):
#   local     the host builds the release binaries (cargo build --release --workspace),
#             they are staged in target/docker-bin, and the images are built on local
#             base images made from Debian packages (scripts/docker-base-images.sh).
#             No registry is contacted. Needs cargo, apt-get and dpkg-deb on the host.
#   registry  plain `docker compose build`: the binaries are compiled inside
#             rust:<version>-bookworm and run on distroless/cc, pulled from their registries.
#   auto      (default) local when the host has cargo, apt-get and dpkg-deb, else registry.
#
# The `cluster` profile (by --profile cluster or COMPOSE_PROFILES) also needs the settings in
# docker/cluster.env: they are read here (the shell's own values win, then these, then .env's), and in
# local mode the ClickHouse image is made from Debian's package.
set -euo pipefail

# The binaries that go into images, one image each.
readonly COMPONENTS=(user-service product-service order-service log-aggregator logging-sidecar metrics-sidecar)
readonly LOCAL_BUILD_IMAGE=sidecar-obs/base-build:bookworm
readonly LOCAL_RUNTIME_IMAGE=sidecar-obs/base-runtime:bookworm
readonly LOCAL_PROMETHEUS_IMAGE=sidecar-obs/prometheus:bookworm
readonly LOCAL_CLICKHOUSE_IMAGE=sidecar-obs/clickhouse:bookworm
readonly CLUSTER_ENV=docker/cluster.env
readonly DEFAULT_WAIT_SECONDS=120

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

say() { echo "compose: $*" >&2; }
die() { say "error: $*"; exit 1; }

# The compose tool: the plugin when it answers, else the standalone program.
compose_tool() {
    if docker compose version >/dev/null 2>&1; then
        echo "docker compose"
    elif command -v docker-compose >/dev/null 2>&1; then
        echo "docker-compose"
    else
        die "neither 'docker compose' nor 'docker-compose' is installed"
    fi
}

image_source() {
    case "${IMAGE_SOURCE:-auto}" in
        local | registry) echo "${IMAGE_SOURCE}" ;;
        auto)
            if command -v cargo >/dev/null && command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null; then
                echo local
            else
                echo registry
            fi
            ;;
        *) die "IMAGE_SOURCE=${IMAGE_SOURCE}: expected local, registry or auto" ;;
    esac
}

# Builds the release binaries on the host and stages, without debug info, those that exist.
stage_binaries() {
    if [ "${SKIP_CARGO_BUILD:-0}" != 1 ]; then
        say "building release binaries on the host (cargo build --release --workspace)"
        cargo build --release --workspace --locked >&2
    fi
    local release="${CARGO_TARGET_DIR:-$root/target}/release" staged="$root/target/docker-bin"
    mkdir -p "$staged"
    local found=0
    for bin in "${COMPONENTS[@]}"; do
        if [ ! -x "$release/$bin" ]; then
            rm -f "$staged/$bin"
            continue
        fi
        found=$((found + 1))
        # Rewritten only when changed, so that the image layers stay cached.
        if [ ! -e "$staged/$bin" ] || [ "$release/$bin" -nt "$staged/$bin" ]; then
            if command -v strip >/dev/null; then
                strip --strip-debug -o "$staged/$bin.tmp" "$release/$bin"
            else
                cp "$release/$bin" "$staged/$bin.tmp"
            fi
            mv "$staged/$bin.tmp" "$staged/$bin"
        fi
    done
    [ "$found" -gt 0 ] || die "no release binary found in $release"
    say "staged $found binaries in target/docker-bin."
}

# Polls the health of every container of the project until all are healthy.
wait_healthy() {
    local timeout="${1:-$DEFAULT_WAIT_SECONDS}" start=$SECONDS ids status bad
    # shellcheck disable=SC2086 # the tool is one or two words
    ids="$($tool "${before[@]}" ps -q)"
    [ -n "$ids" ] || die "no container of this project is running"
    while :; do
        bad=""
        for id in $ids; do
            status="$(docker inspect -f '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$id")"
            case "$status" in
                *" running healthy" | *" running none") ;;
                *) bad+="${status#/}; " ;;
            esac
        done
        if [ -z "$bad" ]; then
            say "all $(echo "$ids" | wc -w) containers healthy after $((SECONDS - start)) s."
            return 0
        fi
        if [ $((SECONDS - start)) -ge "$timeout" ]; then
            die "not healthy after ${timeout} s: $bad"
        fi
        sleep 1
    done
}


# The compose subcommand (the first argument that is neither an option nor its value), the
# arguments after it, and the profiles named on the command line.
subcommand=""
before=()
after=()
profiles=""
skip=""
for arg in "$@"; do
    if [ -n "$subcommand" ]; then after+=("$arg"); continue; fi
    [ "$arg" = wait ] || before+=("$arg")
    if [ -n "$skip" ]; then
        [ "$skip" = profile ] && profiles+=",$arg"
        skip=""
        continue
    fi
    case "$arg" in
        --profile) skip=profile ;;
        -f | --file | -p | --project-name | --env-file | --project-directory) skip=value ;;
        -*) ;;
        *) subcommand="$arg" ;;
    esac
done

# Exports KEY=VALUE lines of a file whose keys are not set yet.
load_env() {
    local line key
    while IFS= read -r line; do
        [[ "$line" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || continue
        key="${line%%=*}"
        [ -n "${!key+set}" ] || export "$line"
    done <"$1"
}

# The same settings compose reads: .env when present (the shell's own values win), and
# before it the cluster profile's, which then win over .env's.
cluster=0
[[ ",$profiles,${COMPOSE_PROFILES:-}," == *",cluster,"* ]] && cluster=1
if [ "$cluster" = 1 ]; then load_env "$CLUSTER_ENV"; fi
if [ -f .env ]; then load_env .env; fi

tool="$(compose_tool)"
source="$(image_source)"
if [ "$source" = local ]; then
    export BUILD_IMAGE="$LOCAL_BUILD_IMAGE" RUNTIME_IMAGE="$LOCAL_RUNTIME_IMAGE" PREBUILT=1
    export PROMETHEUS_IMAGE="${PROMETHEUS_IMAGE:-$LOCAL_PROMETHEUS_IMAGE}"
    export CLICKHOUSE_IMAGE="${CLICKHOUSE_IMAGE:-$LOCAL_CLICKHOUSE_IMAGE}"
fi


case "$subcommand" in
    wait)
        wait_healthy "${after[0]:-}"
        exit 0
        ;;
    build | up | create | run)
        if [ "$source" = local ]; then
            if [ "$cluster" = 1 ]; then
                "$root/scripts/docker-base-images.sh" --clickhouse
            else
                "$root/scripts/docker-base-images.sh"
            fi
            stage_binaries
        fi
        ;;
esac

# shellcheck disable=SC2086 # the tool is one or two words
exec $tool "$@"
