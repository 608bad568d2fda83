#!/usr/bin/env bash
# Stop splitee's Redis: `redis-cli shutdown` first (flushes the AOF), then
# SIGTERM/SIGKILL via the pid file if it lingers. A no-op when not running.
# A Redis started in secure mode (deploy/secure.sh) has no plaintext port and its ACL user may
# not SHUTDOWN: it gets SIGTERM at once, which Redis handles the same way (AOF flushed).
# Also stops the replica and Sentinels of deploy/hosts.sh's topology (deploy/redis-ha-start.sh).
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

redis_shutdown() { # PID
  ! grep -q '^tls-port' "$VAR_DIR/redis/redis.conf" 2>/dev/null &&
    command -v redis-cli >/dev/null 2>&1 &&
    timeout 5 redis-cli -h "$HOST" -p "$REDIS_PORT" shutdown >/dev/null 2>&1 &&
    wait_pid_exit "$1" "${SPLITEE_STOP_TIMEOUT:-20}"
}

# The Sentinels and the replica of deploy/hosts.sh's topology first (SIGTERM: Redis flushes its
# AOF as on SHUTDOWN), so that no failover starts while the primary stops.
for name in sentinel-1 sentinel-2 sentinel-3 redis-2; do
  if is_running "$name"; then
    pid="$(read_pid "$name")"
    stop_pid "$name" || die "could not stop $name (pid $pid)"
    log "$name stopped (pid $pid)"
  fi
  rm -f "$(pid_file "$name")"
done
if hosts_up; then
  stop_server redis   # SIGTERM (redis-cli from here cannot reach the primary's namespace)
else
  stop_server redis redis_shutdown
fi
