#!/usr/bin/env bash
# The project's test command. On a fresh machine it installs what the tests need
# (Prometheus's promtool and server, Chromium and its WebDriver for the web console's
# browser test, ClickHouse's server and client for the ClickHouse store's tests (they start
# their own server from the binary), and python3-venv, from Debian's packages; then
# pyarrow and schemathesis from PyPI in venvs under target/, and cargo-fuzz from
# crates.io), runs the whole Rust test
# suite, the aggregator's OpenAPI check (scripts/test-openapi.sh, about a minute), a
# bounded fuzz run of every parser (scripts/fuzz.sh --ci, about 2 minutes after the
# first build of fuzz/), then the Docker system test whenever a Docker engine answers: the
# default stack, then the `cluster` profile (two aggregators over ClickHouse), which reuses
# the release binaries and images of the first (about 8 more minutes; 10 when the ClickHouse
# image is made from Debian's packages for the first time).
#
#   SKIP_SYSTEM_TEST=1    run everything but the Docker system test
#   SKIP_CLUSTER_SYSTEM_TEST=1  run the system test on the default stack only
#   REQUIRE_TEST_TOOLS=1  fail when a tool the tests need is missing, instead of saying
#                         that the tests needing it skip (CI sets it, in .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*" >&2; }
require=${REQUIRE_TEST_TOOLS:-0}

if ! command -v cargo >/dev/null 2>&1; then
    say "cargo is not installed: install a Rust toolchain (https://rustup.rs) and run this again."
    exit 1
fi

debian_packages=()
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    debian_packages+=(prometheus)
fi
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    debian_packages+=(chromium chromium-driver fonts-dejavu-core)
fi
# Debian's package puts the server in /usr/sbin, outside a normal user's PATH.
if ! command -v clickhouse-server >/dev/null 2>&1 && [[ ! -x /usr/sbin/clickhouse-server ]]; then
    debian_packages+=(clickhouse-server)
fi
if ! command -v clickhouse-client >/dev/null 2>&1; then
    debian_packages+=(clickhouse-client)
fi
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    debian_packages+=(python3 python3-venv)
fi
if [[ ${#debian_packages[@]} -gt 0 ]]; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        say "Installing Debian's packages ${debian_packages[*]} (promtool and the Prometheus server for the metrics tests, Chromium for the console's browser test, ClickHouse for the ClickHouse store's tests, python3-venv for schemathesis)..."
        apt-get update -qq >/dev/null
        apt-get install -y -qq --no-install-recommends "${debian_packages[@]}" >/dev/null
    elif [[ $require == 1 ]]; then
        say "REQUIRE_TEST_TOOLS=1 but ${debian_packages[*]} are missing and cannot be installed here (needs root and apt-get)."
        exit 1
    else
        say "${debian_packages[*]} are missing and cannot be installed here (needs root and apt-get);"
        say "the tests that need them will say that they are skipped."
    fi
fi
export REQUIRE_TEST_TOOLS=$require
# The ClickHouse store's tests look for clickhouse-server on the PATH; Debian puts it in
# /usr/sbin, which a normal user's PATH lacks.
if ! command -v clickhouse-server >/dev/null 2>&1 && [[ -x /usr/sbin/clickhouse-server ]]; then
    export PATH="$PATH:/usr/sbin"
fi

# The aggregator's segments are Parquet; a test reads them with pyarrow (from PyPI), in
# a venv of its own under target/.
if [[ -z ${PYARROW_PYTHON:-} ]]; then
  venv=target/pyarrow-venv
  if ! "$venv/bin/python" -c 'import pyarrow' >/dev/null 2>&1; then
    if ! python3 -m venv --help >/dev/null 2>&1 && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
      say "Installing Debian's python3-venv (for the pyarrow venv)..."
      apt-get update -qq >/dev/null
      apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    fi
    say "Installing pyarrow from PyPI into $venv (a test reads the store's Parquet files with it)..."
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q pyarrow
  fi
  export PYARROW_PYTHON="$PWD/$venv/bin/python"
fi

say "Building and running the Rust test suite (cargo test --workspace)..."
cargo test --workspace --locked

if python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    say "Checking the aggregator against its OpenAPI description (scripts/test-openapi.sh)..."
    scripts/test-openapi.sh
elif [[ $require == 1 ]]; then
    say "REQUIRE_TEST_TOOLS=1 but python3 with venv is missing: cannot run schemathesis."
    exit 1
else
    say "python3 with venv is missing: not running the OpenAPI check (scripts/test-openapi.sh)."
fi

say "Fuzzing every parser for a bounded time (scripts/fuzz.sh --ci)..."
scripts/fuzz.sh --ci

if [[ ${SKIP_SYSTEM_TEST:-0} == 1 ]]; then
    say "SKIP_SYSTEM_TEST=1: not running the Docker system test."
elif ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
    say "No Docker engine answers: not running the Docker system test."
elif [[ ! -x scripts/test-system.sh ]]; then
    say "scripts/test-system.sh is missing: not running the Docker system test."
else
    say "A Docker engine answers: running the system test (scripts/test-system.sh)..."
    scripts/test-system.sh
    if [[ ${SKIP_CLUSTER_SYSTEM_TEST:-0} == 1 ]]; then
        say "SKIP_CLUSTER_SYSTEM_TEST=1: not running the system test of the cluster profile."
    else
        say "Running the system test of the cluster profile: two aggregators over ClickHouse (scripts/test-system.sh --profile cluster)..."
        # The release build of the first run is up to date: cargo only checks it.
        scripts/test-system.sh --profile cluster
    fi
fi
say "All tests passed."
