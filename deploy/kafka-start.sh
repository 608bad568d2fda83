#!/usr/bin/env bash
# Start the local single-node Kafka broker (KRaft) on 127.0.0.1:$SPLITEE_KAFKA_PORT.
# Idempotent: a quick no-op when it is already running. Fetches the jars first
# if needed, formats the storage on the first start, and returns only once the
# broker has logged "Kafka Server started" and accepts connections.
# State: var/kafka/ (config, cluster.id, data/), log: var/log/kafka.log.
# SPLITEE_SECURE=1: SASL_SSL (SCRAM) on that port instead (deploy/secure.sh); a storage
# formatted in one mode does not start in the other.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=secure.sh source-path=SCRIPTDIR
source "$DEPLOY_DIR/secure.sh"

NAME=kafka
KAFKA_DIR="$VAR_DIR/kafka"
DATA_DIR="$KAFKA_DIR/data"
CONFIG="$KAFKA_DIR/server.properties"
LOGFILE="$LOG_DIR/kafka.log"
TIMEOUT="${SPLITEE_KAFKA_START_TIMEOUT:-120}"

mkdir -p "$LOG_DIR" "$DATA_DIR"
take_lock "$NAME"   # serialise concurrent start/stop calls
exit_if_running "$NAME" "$HOST:$KAFKA_PORT" "$LOGFILE" "$TIMEOUT" port_open "$HOST" "$KAFKA_PORT"

command -v java >/dev/null 2>&1 || die "java not found: run deploy/install.sh"
"$DEPLOY_DIR/kafka/fetch-jars.sh"

require_port_free "$KAFKA_PORT" "kafka" SPLITEE_KAFKA_PORT
require_port_free "$KAFKA_CONTROLLER_PORT" "the kafka controller" SPLITEE_KAFKA_CONTROLLER_PORT

render "$DEPLOY_DIR/kafka/server.properties.tmpl" "$CONFIG" \
  KAFKA_PORT="$KAFKA_PORT" KAFKA_CONTROLLER_PORT="$KAFKA_CONTROLLER_PORT" DATA_DIR="$DATA_DIR"
kafka_check_mode "$KAFKA_DIR" "$DATA_DIR"
if secure_mode; then   # SASL_SSL listeners, SCRAM users (deploy/secure.sh)
  require_env SPLITEE_KAFKA__SASL_USERNAME SPLITEE_KAFKA__SASL_PASSWORD
  ensure_tls
  secure_kafka_config "$CONFIG" "$KAFKA_DIR"
fi

CLASSPATH="$KAFKA_LIBS/*"
LOG4J_OPT="-Dlog4j.configuration=file:$DEPLOY_DIR/kafka/log4j.properties"
# Short-lived tools: small heap, C1 only, so they start fast on a busy machine.
kafka_tool() {
  java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC "$LOG4J_OPT" -cp "$CLASSPATH" "$@"
}

# First start: create a cluster id once, then format the storage with it.
if [[ ! -f "$DATA_DIR/meta.properties" ]]; then
  if [[ ! -s "$KAFKA_DIR/cluster.id" ]]; then
    kafka_tool kafka.tools.StorageTool random-uuid 2>>"$LOGFILE" | tail -n1 | tr -d '[:space:]' > "$KAFKA_DIR/cluster.id.tmp"
    [[ -s "$KAFKA_DIR/cluster.id.tmp" ]] || die "could not generate a Kafka cluster id (see $(relpath "$LOGFILE"))"
    mv "$KAFKA_DIR/cluster.id.tmp" "$KAFKA_DIR/cluster.id"
  fi
  log "formatting kafka storage in $(relpath "$DATA_DIR") (cluster id $(cat "$KAFKA_DIR/cluster.id"))"
  if ! kafka_tool kafka.tools.StorageTool format --ignore-formatted \
        -t "$(cat "$KAFKA_DIR/cluster.id")" -c "$CONFIG" "${KAFKA_FORMAT_ARGS[@]}" >> "$LOGFILE" 2>&1; then
    show_log_tail "$LOGFILE"
    die "kafka storage format failed"
  fi
elif [[ ! -s "$KAFKA_DIR/cluster.id" ]]; then
  sed -n 's/^cluster\.id=//p' "$DATA_DIR/meta.properties" > "$KAFKA_DIR/cluster.id"
fi

# Readiness is judged on log lines written after this point.
log_offset=$(( $(stat -c %s "$LOGFILE" 2>/dev/null || echo 0) ))

read -r -a heap_opts <<< "$KAFKA_HEAP_OPTS"
read -r -a extra_opts <<< "${SPLITEE_KAFKA_OPTS:-}"
start_daemon "$NAME" "$KAFKA_DIR" "$LOGFILE" -- \
  java -server "${heap_opts[@]}" \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true "$LOG4J_OPT" -Dkafka.logs.dir="$LOG_DIR" \
    "${extra_opts[@]}" \
    -cp "$CLASSPATH" kafka.Kafka "$CONFIG"

kafka_started() {
  port_open "$HOST" "$KAFKA_PORT" &&
    tail -c +$((log_offset + 1)) "$LOGFILE" | grep -q 'Kafka Server started'
}

await_ready "$NAME" "$HOST:$KAFKA_PORT" "$LOGFILE" "$TIMEOUT" kafka_started
