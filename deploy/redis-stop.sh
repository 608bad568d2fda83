#!/usr/bin/env bash
# Stop splitee's Redis: `redis-cli shutdown` first (flushes the AOF), then
# SIGTERM/SIGKILL via the pid file if it lingers. A no-op when not running.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=redis
mkdir -p "$RUN_DIR"
exec 9> "$RUN_DIR/$NAME.lock"
flock 9

if ! is_running "$NAME"; then
  rm -f "$(pid_file "$NAME")"
  log "redis not running"
  exit 0
fi
pid="$(read_pid "$NAME")"
if command -v redis-cli >/dev/null 2>&1 &&
   timeout 5 redis-cli -h "$HOST" -p "$REDIS_PORT" shutdown >/dev/null 2>&1; then
  wait_pid_exit "$pid" "${SPLITEE_STOP_TIMEOUT:-20}" || true
fi
stop_pid "$NAME" || die "could not stop redis (pid $pid)"
log "redis stopped (pid $pid)"
