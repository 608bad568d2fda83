#!/usr/bin/env bash
# Stop splitee's Prometheus (SIGTERM, SIGKILL after $SPLITEE_STOP_TIMEOUT s).
# A no-op when it is not running.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=prometheus
mkdir -p "$RUN_DIR"
exec 9> "$RUN_DIR/$NAME.lock"
flock 9

if ! is_running "$NAME"; then
  rm -f "$(pid_file "$NAME")"
  log "prometheus not running"
  exit 0
fi
pid="$(read_pid "$NAME")"
stop_pid "$NAME" || die "could not stop prometheus (pid $pid)"
log "prometheus stopped (pid $pid)"
