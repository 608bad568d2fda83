#!/usr/bin/env bash
# Stop the local Kafka broker started by deploy/kafka-start.sh.
# SIGTERM first (controlled shutdown, flushes logs), SIGKILL after
# $SPLITEE_STOP_TIMEOUT (default 20) s. A no-op when it is not running.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=kafka
mkdir -p "$RUN_DIR"
exec 9> "$RUN_DIR/$NAME.lock"
flock 9

if ! is_running "$NAME"; then
  rm -f "$(pid_file "$NAME")"
  log "kafka not running"
  exit 0
fi
pid="$(read_pid "$NAME")"
stop_pid "$NAME" || die "could not stop kafka (pid $pid)"
log "kafka stopped (pid $pid)"
