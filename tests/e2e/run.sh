#!/usr/bin/env bash
# End-to-end tests: drive the built `keel` binary with the official OpenAI and
# Anthropic Python SDKs.
#
#   bash tests/e2e/run.sh [pytest args...]
#
# Creates (or reuses) a virtualenv at $REPO/.venv-e2e, installs tests/e2e/requirements.txt
# when it changed, builds `keel` unless KEEL_BIN points at one, then runs pytest and
# exits with its status. Any setup failure exits non-zero with a message.
#
# Environment: KEEL_BIN (a prebuilt binary), PYTHON (interpreter for the venv,
# default python3), CARGO_TARGET_DIR (honoured when building).
set -euo pipefail

die() {
    echo "e2e: error: $*" >&2
    exit 1
}

HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd -- "$HERE/../.." && pwd)"
VENV="$REPO/.venv-e2e"
REQS="$HERE/requirements.txt"
PYTHON="${PYTHON:-python3}"

[ -f "$REQS" ] || die "missing $REQS"
command -v "$PYTHON" >/dev/null 2>&1 || die "no Python interpreter \`$PYTHON\` (set PYTHON=...)"

# 1. The virtualenv.
if [ ! -x "$VENV/bin/python" ]; then
    echo "e2e: creating virtualenv $VENV" >&2
    "$PYTHON" -m venv "$VENV" </dev/null || die "could not create the virtualenv $VENV (is python3-venv installed?)"
fi
"$VENV/bin/python" -c 'import sys; sys.exit(0)' </dev/null || die "the virtualenv $VENV is broken; delete it and rerun"

# 2. The pinned packages, reinstalled only when requirements.txt (or the interpreter) changed.
STAMP="$VENV/.keel-e2e-requirements.sha256"
want="$( { cat "$REQS"; "$VENV/bin/python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [ "$want" != "$have" ]; then
    echo "e2e: installing $REQS" >&2
    rm -f "$STAMP"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-input -r "$REQS" </dev/null \
        || die "pip install -r $REQS failed"
    echo "$want" >"$STAMP"
fi

# 3. The binary under test.
if [ -z "${KEEL_BIN:-}" ]; then
    command -v cargo >/dev/null 2>&1 || die "cargo not found; install Rust or set KEEL_BIN to a built keel binary"
    echo "e2e: building keel (cargo build -p keel-cli)" >&2
    (cd "$REPO" && cargo build -p keel-cli </dev/null) || die "cargo build -p keel-cli failed"
    target="${CARGO_TARGET_DIR:-target}"
    case "$target" in
        /*) ;;
        *) target="$REPO/$target" ;;
    esac
    KEEL_BIN="$target/debug/keel"
fi
case "$KEEL_BIN" in
    /*) ;;
    *) KEEL_BIN="$(pwd)/$KEEL_BIN" ;;
esac
[ -x "$KEEL_BIN" ] || die "KEEL_BIN=$KEEL_BIN is not an executable file"
export KEEL_BIN

# 4. The tests. No .pytest_cache or __pycache__ left in the tree.
cd "$REPO"
export PYTHONDONTWRITEBYTECODE=1
set +e
"$VENV/bin/python" -m pytest tests/e2e -q -p no:cacheprovider "$@" </dev/null
status=$?
set -e
exit "$status"
