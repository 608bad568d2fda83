#!/usr/bin/env bash
# Start splitee's Kafka: deploy.brokers KRaft nodes (default 1), each broker and controller.
# One node: 127.0.0.1:$SPLITEE_KAFKA_PORT, state var/kafka/, log var/log/kafka.log.
# N nodes: node i on 127.0.0.1:$((SPLITEE_KAFKA_PORT + i - 1)) (controller likewise from
# SPLITEE_KAFKA_CONTROLLER_PORT), state var/kafka-<i>/, log var/log/kafka-<i>.log, one cluster
# id; or, while deploy/hosts.sh has the topology up, node i in its own network namespace on
# its own address. Topics get min(3, N) replicas, min.insync.replicas 2 from 3 nodes on,
# unclean leader election off (deploy/kafka/server.properties.tmpl).
# Idempotent: nodes already running are left alone. Fetches the jars first if needed, formats
# each storage on its first start, starts every missing node at once (a quorum of N needs a
# majority up) and returns once each has logged "Kafka Server started" and accepts connections.
# SPLITEE_SECURE=1: SASL_SSL (SCRAM) on that port instead (deploy/secure.sh), one node only; a
# storage formatted in one mode does not start in the other.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=secure.sh source-path=SCRIPTDIR
source "$DEPLOY_DIR/secure.sh"

no_args "$@"
N="${KAFKA_BROKERS:-$(kafka_brokers)}"
[[ "$N" =~ ^[1-9]$ ]] || die "deploy.brokers must be 1..9 (got '$N')"
if secure_mode && (( N > 1 )); then
  die "secure mode (SPLITEE_SECURE=1) runs one Kafka broker; set deploy.brokers = 1"
fi
if hosts_up && (( N > 3 )); then die "deploy/hosts.sh has hosts for 3 brokers (deploy.brokers = $N)"; fi
REPLICATION=$(( N < 3 ? N : 3 ))
MIN_ISR=$(( N >= 3 ? 2 : 1 ))
# 256 MiB per node is plenty for this project's traffic; one node keeps its old default.
if (( N == 1 )); then default_heap="-Xmx512m -Xms256m"; else default_heap="-Xmx256m -Xms128m"; fi
KAFKA_HEAP_OPTS="${SPLITEE_KAFKA_HEAP_OPTS:-$default_heap}"
TIMEOUT="${SPLITEE_KAFKA_START_TIMEOUT:-120}"
CLASSPATH="$KAFKA_LIBS/*"
LOG4J_OPT="-Dlog4j.configuration=file:$DEPLOY_DIR/kafka/log4j.properties"
# Short-lived tools: small heap, C1 only, so they start fast on a busy machine.
kafka_tool() {
  java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC "$LOG4J_OPT" -cp "$CLASSPATH" "$@"
}

mkdir -p "$LOG_DIR"
take_lock kafka   # serialise concurrent start/stop calls (every node)

voters=()
for ((i = 1; i <= N; i++)); do voters+=("$i@$(kafka_node_host "$i"):$(kafka_node_cport "$i")"); done
VOTERS="$(IFS=,; printf '%s' "${voters[*]}")"

node_port_open() { # I
  port_open_on "kafka$1" "$(kafka_node_host "$1")" "$(kafka_node_port "$1")"
}
node_ready() { # I LOG_OFFSET
  node_port_open "$1" &&
    tail -c +$(($2 + 1)) "$LOG_DIR/$(kafka_node_name "$1" "$N").log" | grep -q 'Kafka Server started'
}

# A node that runs and answers is left alone; one that runs but does not answer is an error.
todo=()
for ((i = 1; i <= N; i++)); do
  name="$(kafka_node_name "$i" "$N")"
  if is_running "$name"; then
    if wait_until "$TIMEOUT" "$name" node_port_open "$i"; then
      log "$name already running (pid $(read_pid "$name"), $(kafka_node_host "$i"):$(kafka_node_port "$i"))"
      continue
    fi
    show_log_tail "$LOG_DIR/$name.log"
    die "$name (pid $(read_pid "$name")) is not answering; try deploy/kafka-stop.sh"
  fi
  rm -f "$(pid_file "$name")"
  todo+=("$i")
done
(( ${#todo[@]} )) || exit 0

command -v java >/dev/null 2>&1 || die "java not found: run deploy/install.sh"
"$DEPLOY_DIR/kafka/fetch-jars.sh"

# One cluster id for every node: var/kafka/cluster.id (one node) or var/kafka-cluster.id.
if (( N == 1 )); then CLUSTER_ID_FILE="$VAR_DIR/kafka/cluster.id"; else CLUSTER_ID_FILE="$VAR_DIR/kafka-cluster.id"; fi
mkdir -p "$(dirname "$CLUSTER_ID_FILE")"
if (( N == 1 )) && [[ ! -s "$CLUSTER_ID_FILE" && -f "$VAR_DIR/kafka/data/meta.properties" ]]; then
  sed -n 's/^cluster\.id=//p' "$VAR_DIR/kafka/data/meta.properties" > "$CLUSTER_ID_FILE"
fi
if [[ ! -s "$CLUSTER_ID_FILE" ]]; then
  kafka_tool kafka.tools.StorageTool random-uuid 2>>"$LOG_DIR/kafka-format.log" | tail -n1 |
    tr -d '[:space:]' > "$CLUSTER_ID_FILE.tmp"
  [[ -s "$CLUSTER_ID_FILE.tmp" ]] || die "could not generate a Kafka cluster id (see $(relpath "$LOG_DIR/kafka-format.log"))"
  mv "$CLUSTER_ID_FILE.tmp" "$CLUSTER_ID_FILE"
fi
CLUSTER_ID="$(cat "$CLUSTER_ID_FILE")"

read -r -a heap_opts <<< "$KAFKA_HEAP_OPTS"
read -r -a extra_opts <<< "${SPLITEE_KAFKA_OPTS:-}"
declare -A offset
for i in "${todo[@]}"; do
  name="$(kafka_node_name "$i" "$N")"
  node_dir="$VAR_DIR/$name"
  data_dir="$node_dir/data"
  config="$node_dir/server.properties"
  logfile="$LOG_DIR/$name.log"
  mkdir -p "$data_dir"
  if ! hosts_up; then
    require_port_free "$(kafka_node_port "$i")" "$name" SPLITEE_KAFKA_PORT
    require_port_free "$(kafka_node_cport "$i")" "the controller of $name" SPLITEE_KAFKA_CONTROLLER_PORT
  fi
  render "$DEPLOY_DIR/kafka/server.properties.tmpl" "$config" \
    NODE_ID="$i" VOTERS="$VOTERS" HOST="$(kafka_node_host "$i")" \
    KAFKA_PORT="$(kafka_node_port "$i")" KAFKA_CONTROLLER_PORT="$(kafka_node_cport "$i")" \
    DATA_DIR="$data_dir" REPLICATION="$REPLICATION" MIN_ISR="$MIN_ISR"
  kafka_check_mode "$node_dir" "$data_dir"
  if secure_mode; then   # SASL_SSL listeners, SCRAM users (deploy/secure.sh)
    require_env SPLITEE_KAFKA__SASL_USERNAME SPLITEE_KAFKA__SASL_PASSWORD
    ensure_tls
    secure_kafka_config "$config" "$node_dir"
  fi
  if [[ ! -f "$data_dir/meta.properties" ]]; then
    log "formatting $name storage in $(relpath "$data_dir") (cluster id $CLUSTER_ID)"
    if ! kafka_tool kafka.tools.StorageTool format --ignore-formatted \
          -t "$CLUSTER_ID" -c "$config" "${KAFKA_FORMAT_ARGS[@]}" >> "$logfile" 2>&1; then
      show_log_tail "$logfile"
      die "$name storage format failed"
    fi
  fi
  # Readiness is judged on log lines written after this point.
  offset[$i]=$(( $(stat -c %s "$logfile" 2>/dev/null || echo 0) ))
  host_prefix "kafka$i"
  start_daemon "$name" "$node_dir" "$logfile" -- \
    "${HOSTP[@]}" java -server "${heap_opts[@]}" \
      -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
      -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError \
      -Djava.awt.headless=true "$LOG4J_OPT" -Dkafka.logs.dir="$LOG_DIR" \
      "${extra_opts[@]}" \
      -cp "$CLASSPATH" kafka.Kafka "$config"
done

for i in "${todo[@]}"; do
  name="$(kafka_node_name "$i" "$N")"
  await_ready "$name" "$(kafka_node_host "$i"):$(kafka_node_port "$i")" "$LOG_DIR/$name.log" \
    "$TIMEOUT" node_ready "$i" "${offset[$i]}"
done
