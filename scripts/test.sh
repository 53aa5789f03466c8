#!/usr/bin/env bash
# Set up, then lint and run every test (PostgreSQL tests skip when no server is reachable,
# except under CI=true, where they must run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/pytest "$@"
