#!/usr/bin/env bash
# Set up, then run the whole flow on the bundled sample mentions (no credentials, no network).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/triage demo "$@"
