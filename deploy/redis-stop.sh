#!/usr/bin/env bash
# Stop splitee's Redis: `redis-cli shutdown` first (flushes the AOF), then
# SIGTERM/SIGKILL via the pid file if it lingers. A no-op when not running.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

redis_shutdown() { # PID
  command -v redis-cli >/dev/null 2>&1 &&
    timeout 5 redis-cli -h "$HOST" -p "$REDIS_PORT" shutdown >/dev/null 2>&1 &&
    wait_pid_exit "$1" "${SPLITEE_STOP_TIMEOUT:-20}"
}

stop_server redis redis_shutdown
