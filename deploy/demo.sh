#!/usr/bin/env bash
# The demo: sets up a fresh machine (virtual environment, Kafka jars, Redis, Prometheus),
# starts the pipeline, streams CIFAR-10 frames from 2 cameras with distortion schedules,
# prints a summary (its last line one JSON object) and stops everything it started.
# Usage: deploy/demo.sh [--config FILE]   (default: deploy/demo.toml)
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

config="$DEPLOY_DIR/demo.toml"
case "${1:-}" in
  --config) config="$2" ;;
  -h|--help) usage; exit 0 ;;
  "") ;;
  *) die "unknown argument: $1 (try --help)" ;;
esac
SPLITEE_CONFIG="$(cd "$(dirname "$config")" && pwd -P)/$(basename "$config")"
export SPLITEE_CONFIG

cleanup() { "$DEPLOY_DIR/down.sh" >/dev/null 2>&1 || true; }
trap cleanup EXIT

"$DEPLOY_DIR/setup.sh" >&2
"$DEPLOY_DIR/up.sh" --no-producers
SPLITEE="$REPO/.venv/bin/splitee"
"$SPLITEE" policy reset >&2
RUN_ID="demo-$(date +%s)"
log "streaming (run id $RUN_ID) ..."
"$SPLITEE" produce --run-id "$RUN_ID" >&2
log "waiting for every frame's result ..."
"$SPLITEE" summary --expect 1 --run-id "$RUN_ID" --timeout 180
