#!/usr/bin/env bash
# API fuzzing: runs schemathesis (a pinned version, in a virtualenv this script creates) against a
# live auth-server's /openapi.json, with every check schemathesis has, and exits non-zero on any
# finding (a 5xx, an answer the document does not describe, a request that should have been
# refused and was not...).
#
#   bash .ci/schemathesis.sh [--binary PATH] [--setup-only]
#
# --binary      the auth-server to fuzz; default: `cargo build -p auth-server` and its debug binary.
# --setup-only  create the virtualenv and stop.
#
# The server runs on a free loopback port over a temporary data directory with the booking spec
# (issuer rewritten to that port; argon2 at its cheapest allowed cost, since the run is about HTTP
# and not hashing). AUTH_DATABASE_URL, when set, puts it on that database instead of SQLite. The
# per-IP and per-account login limits are raised far beyond what the run sends: a 429 there is
# the limiter working, and would hide what the fuzzer is after.
#
# Knobs: AUTH_FUZZ_MAX_EXAMPLES (test cases per operation and phase, default 100), AUTH_FUZZ_SEED
# (reproduce a run), AUTH_FUZZ_WORKERS (default 1), SCHEMATHESIS_VENV (default
# $CARGO_TARGET_DIR/venv-schemathesis, else target/venv-schemathesis).
#
# Exit codes: 0 clean run, 1 findings (or a failed start), 75 the virtualenv cannot be created
# (no python3, no network to PyPI): callers outside CI may skip on 75.
set -euo pipefail
cd "$(dirname "$0")/.."

ST_VERSION=4.32.5
EX_TEMPFAIL=75
target_dir="${CARGO_TARGET_DIR:-target}"
venv="${SCHEMATHESIS_VENV:-$target_dir/venv-schemathesis}"

binary=""
setup_only=false
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --setup-only) setup_only=true; shift ;;
    *) echo "schemathesis.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

# --- The virtualenv: created once per target directory, recreated when the pin changes.
if [ "$(cat "$venv/.pinned" 2>/dev/null)" != "$ST_VERSION" ]; then
  echo "schemathesis.sh: installing schemathesis $ST_VERSION into $venv"
  rm -rf "$venv"
  if ! command -v python3 >/dev/null 2>&1; then
    echo "schemathesis.sh: python3 is not installed" >&2
    exit "$EX_TEMPFAIL"
  fi
  if ! python3 -m venv "$venv" \
    || ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      -c .ci/schemathesis-constraints.txt "schemathesis==$ST_VERSION"; then
    echo "schemathesis.sh: could not create the virtualenv (python3 -m venv, pip install from PyPI)" >&2
    rm -rf "$venv"
    exit "$EX_TEMPFAIL"
  fi
  echo "$ST_VERSION" >"$venv/.pinned"
fi
if $setup_only; then
  "$venv/bin/st" --version
  exit 0
fi

if [ -z "$binary" ]; then
  cargo build --quiet -p auth-server
  binary="$target_dir/debug/auth-server"
fi

# --- A server of its own.
work="$(mktemp -d "${TMPDIR:-/tmp}/auth-fuzz.XXXXXX")"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

port="$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
spec="$work/auth.toml"
sed -e "s|^issuer = \"http://127.0.0.1:8080\"|issuer = \"$base\"|" \
  -e 's|^memory_kib = 19456|memory_kib = 4096|' \
  -e 's|^iterations = 2|iterations = 1|' \
  fixtures/specs/booking.toml >"$spec"
for expected in "issuer = \"$base\"" "memory_kib = 4096" "iterations = 1"; do
  grep -qF "$expected" "$spec" || { echo "schemathesis.sh: fixtures/specs/booking.toml changed shape ($expected)" >&2; exit 1; }
done

export AUTH_SPEC="$spec" AUTH_DATA_DIR="$work/data" AUTH_LISTEN="127.0.0.1:$port"
export RUST_LOG="${RUST_LOG:-warn}"

client_id=booking-backend
client_secret="$("$binary" clients add "$client_id" | tail -n 1)"
# The booking spec's tenant_id comes with an invitation (users cannot choose it).
invitation="$("$binary" invitations create --claim tenant_id=hotel-7 2>/dev/null)"

"$binary" serve --per-ip-rps 100000 --login-attempts 100000 --login-failures-per-source 100000 >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 600); do
  if curl -fsS "$base/healthz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "schemathesis.sh: the server exited at startup:" >&2
    cat "$work/server.log" >&2
    exit 1
  fi
  sleep 0.1
done

# A user whose password grant gives schemathesis the access tokens of the bearer endpoints.
username=fuzz
password="correct horse battery staple"
curl -fsS -X POST "$base/v1/users" -H 'content-type: application/json' \
  -d "{\"username\":\"$username\",\"password\":\"$password\",\"invitation\":\"$invitation\"}" >/dev/null

export AUTH_FUZZ_USERNAME="$username" AUTH_FUZZ_PASSWORD="$password"
export AUTH_FUZZ_CLIENT_ID="$client_id" AUTH_FUZZ_CLIENT_SECRET="$client_secret"
# What schemathesis and hypothesis keep between runs goes beside the virtualenv, not into the
# working tree.
state_dir="$(dirname "$venv")"
export AUTH_FUZZ_CACHE_DIR="${AUTH_FUZZ_CACHE_DIR:-$state_dir/schemathesis-cache}"
export HYPOTHESIS_STORAGE_DIRECTORY="${HYPOTHESIS_STORAGE_DIRECTORY:-$state_dir/hypothesis}"

seed=()
if [ -n "${AUTH_FUZZ_SEED:-}" ]; then seed=(--seed "$AUTH_FUZZ_SEED"); fi
# One worker by default: with two worker threads, hypothesis sometimes parses its own sources with
# `ast.parse` in both at once, and CPython 3.11's AST constructor is not safe for that ("AST
# constructor recursion depth mismatch", a runtime error of the tool, not a finding). Set
# AUTH_FUZZ_WORKERS to use more.
echo "schemathesis.sh: fuzzing $base/openapi.json (server log: $work/server.log)"
status=0
"$venv/bin/st" --no-color --config-file .ci/schemathesis.toml run "$base/openapi.json" \
  --checks all \
  --max-examples "${AUTH_FUZZ_MAX_EXAMPLES:-100}" \
  --workers "${AUTH_FUZZ_WORKERS:-1}" \
  --request-timeout 10 \
  --generation-database none \
  --report-dir "$work/report" \
  "${seed[@]}" || status=$?

if [ "$status" -ne 0 ]; then
  echo "schemathesis.sh: findings; the server's warnings and errors:" >&2
  grep -E 'WARN|ERROR' "$work/server.log" | tail -n 50 >&2 || true
fi
exit "$status"
