#!/usr/bin/env bash
# The project's test command. On a fresh machine it installs what the tests need
# (Prometheus's promtool and server, from Debian's packages; pyarrow from PyPI in a
# venv under target/), runs the whole Rust test suite, then the Docker system test
# whenever a Docker engine answers.
#
#   SKIP_SYSTEM_TEST=1   run the Rust tests only
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*" >&2; }

if ! command -v cargo >/dev/null 2>&1; then
  say "cargo is not installed: install a Rust toolchain (https://rustup.rs) and run this again."
  exit 1
fi

if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    say "Installing Debian's package prometheus (promtool and the server, for the metrics tests)..."
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    say "promtool/prometheus are missing and cannot be installed here (needs root and apt-get);"
    say "the tests that need them will say that they are skipped."
  fi
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

if [[ ${SKIP_SYSTEM_TEST:-0} == 1 ]]; then
  say "SKIP_SYSTEM_TEST=1: not running the Docker system test."
elif ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
  say "No Docker engine answers: not running the Docker system test."
elif [[ ! -x scripts/test-system.sh ]]; then
  say "scripts/test-system.sh is missing: not running the Docker system test."
else
  say "A Docker engine answers: running the system test (scripts/test-system.sh)..."
  scripts/test-system.sh
fi
say "All tests passed."
