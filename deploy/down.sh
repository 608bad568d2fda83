#!/usr/bin/env bash
# Stop everything deploy/up.sh started: cameras, workers (by recorded pids), then the servers.
# Usage: deploy/down.sh [--keep-servers]
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

keep=0
case "${1:-}" in
  --keep-servers) keep=1 ;;
  -h|--help) sed -n '2,3p' "$0"; exit 0 ;;
  "") ;;
  *) die "unknown argument: $1 (try --help)" ;;
esac

stop_named() { # NAME
  if [[ -f "$(pid_file "$1")" ]]; then
    stop_pid "$1" && log "stopped $1"
  fi
}
stop_named producers
shopt -s nullglob
for f in "$RUN_DIR"/edge-*.pid "$RUN_DIR"/cloud-*.pid "$RUN_DIR"/evaluator*.pid \
  "$RUN_DIR"/exporter*.pid; do
  stop_named "$(basename "$f" .pid)"
done
rm -f "$VAR_DIR"/prometheus/targets/*.json
if (( ! keep )); then
  "$DEPLOY_DIR/servers-down.sh"
fi
