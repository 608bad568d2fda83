#!/usr/bin/env bash
# Tell, for each of splitee's local servers, whether it runs, its pid, its
# address and its log file. With names (kafka, redis, prometheus) only those;
# kafka means every Kafka node (one line each when deploy.brokers > 1).
# Exit status: 0 when all the servers asked about run, 3 when one does not.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

names=("$@")
(( ${#names[@]} )) || names=(kafka redis prometheus)

rc=0
# NAME HOST ADDR PORT: one line.
row() {
  local name="$1" addr="$3" port="$4" state logfile
  logfile="$(relpath "$LOG_DIR/$name.log")"
  if is_running "$name"; then
    if port_open_on "$2" "$addr" "$port"; then state=running; else state="running (port closed)"; rc=3; fi
    printf '%-10s %-22s pid %-8s %s:%-6s log %s\n' "$name" "$state" "$(read_pid "$name")" "$addr" "$port" "$logfile"
  else
    printf '%-10s %-22s pid %-8s %s:%-6s log %s\n' "$name" stopped - "$addr" "$port" "$logfile"
    rc=3
  fi
}
for name in "${names[@]}"; do
  case "$name" in
    kafka)
      n="$(kafka_started_nodes)"
      if [[ ! -e "$RUN_DIR/kafka-1.pid" ]]; then
        row kafka kafka1 "$(kafka_node_host 1)" "$(kafka_node_port 1)"
      else
        for ((i = 1; i <= n; i++)); do
          row "kafka-$i" "kafka$i" "$(kafka_node_host "$i")" "$(kafka_node_port "$i")"
        done
      fi ;;
    redis) row redis redis1 "$(server_host redis1)" "$REDIS_PORT" ;;
    prometheus) row prometheus core "$(server_host core)" "$PROMETHEUS_PORT" ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown server: $name (kafka, redis or prometheus)" ;;
  esac
done
exit "$rc"
