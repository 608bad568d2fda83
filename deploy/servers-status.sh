#!/usr/bin/env bash
# Tell, for each of splitee's local servers, whether it runs, its pid, its
# address and its log file. With names (kafka, redis, prometheus) only those.
# Exit status: 0 when all the servers asked about run, 3 when one does not.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

names=("$@")
(( ${#names[@]} )) || names=(kafka redis prometheus)

rc=0
for name in "${names[@]}"; do
  case "$name" in
    kafka) port=$KAFKA_PORT ;;
    redis) port=$REDIS_PORT ;;
    prometheus) port=$PROMETHEUS_PORT ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown server: $name (kafka, redis or prometheus)" ;;
  esac
  logfile="$(relpath "$LOG_DIR/$name.log")"
  if is_running "$name"; then
    if port_open "$HOST" "$port"; then state=running; else state="running (port closed)"; rc=3; fi
    printf '%-10s %-22s pid %-8s %s:%-6s log %s\n' "$name" "$state" "$(read_pid "$name")" "$HOST" "$port" "$logfile"
  else
    printf '%-10s %-22s pid %-8s %s:%-6s log %s\n' "$name" stopped - "$HOST" "$port" "$logfile"
    rc=3
  fi
done
exit "$rc"
