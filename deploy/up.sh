#!/usr/bin/env bash
# Start the whole pipeline from one settings file:
#   servers (Kafka, Redis, Prometheus; installed when missing), the virtual environment,
#   the topics, N edge workers, M cloud workers (N, M from [deploy] in the settings),
#   and the cameras (unless --no-producers).
#   Also the evaluator and the exporter (observability); every process serves metrics on
#   deploy.metrics_port_base + i and registers itself with Prometheus.
#   Workers, evaluator and exporter run under a supervisor (deploy/lib.sh: supervise) that
#   restarts them when they die; deploy/status.sh shows the restarts.
#   With deploy.hosts = true (deploy/cluster.toml): first deploy/hosts.sh's network namespaces,
#   then deploy.brokers brokers, Redis with a replica and Sentinels, and the workers each on
#   its host: edge workers and cameras on the edge site, cloud workers in the data centre.
# Usage: deploy/up.sh [--config FILE] [--no-producers] [--no-wait]
# The settings file may also come from $SPLITEE_CONFIG. Idempotent: what runs stays up.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

producers=1 wait=1
while (( $# )); do
  case "$1" in
    --config) SPLITEE_CONFIG="$(cd "$(dirname "$2")" && pwd -P)/$(basename "$2")"; export SPLITEE_CONFIG; shift ;;
    --no-producers) producers=0 ;;
    --no-wait) wait=0 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument: $1 (try --help)" ;;
  esac
  shift
done

"$DEPLOY_DIR/setup.sh" >/dev/null
read -r N_EDGE N_CLOUD PORT_BASE KAFKA_BROKERS BOOTSTRAP_SET HOSTS UPLINK < <("$REPO/.venv/bin/python" -c '
from splitee.settings import Settings
s = Settings()
d = s.deploy
print(d.edge_workers, d.cloud_workers, d.metrics_port_base, d.brokers,
      int("bootstrap" in s.kafka.model_fields_set), int(d.hosts), d.edge_uplink_mbit)')
export KAFKA_BROKERS
if (( HOSTS )) && ! hosts_up; then
  "$DEPLOY_DIR/hosts.sh" up --brokers "$KAFKA_BROKERS" --uplink-mbit "$UPLINK"
  source "$HOSTS_ENV"
fi
"$DEPLOY_DIR/servers-up.sh"
# Several brokers: every process bootstraps from all of them (unless the settings say otherwise).
if (( KAFKA_BROKERS > 1 || HOSTS )) && (( ! BOOTSTRAP_SET )); then
  SPLITEE_KAFKA__BOOTSTRAP="$(kafka_bootstrap "$KAFKA_BROKERS")"
  export SPLITEE_KAFKA__BOOTSTRAP
fi
if hosts_up; then export_hosts_env; fi
SPLITEE="$REPO/.venv/bin/splitee"
in_host core "$SPLITEE" topics create >&2

WORK="$VAR_DIR/workers"
port=$PORT_BASE
# ONP: the prefix that runs a worker on HOST, serving its metrics on HOST's address.
ONP=()
on_host() { # HOST
  host_prefix "$1"
  ONP=("${HOSTP[@]}")
  if hosts_up; then ONP+=(env "SPLITEE_DEPLOY__METRICS_HOST=$(host_ip "$1")"); fi
}
# ROLE NAME HOST: a supervised worker on HOST (edge site: edge; data centre: dc; core), serving
# metrics on HOST's address.
start_worker() {
  local role="$1" name="$2" host="$3" addr
  port=$((port + 1))
  if is_running "$name"; then return 0; fi
  addr="$(server_host "$host")"
  on_host "$host"
  start_supervised "$name" "$WORK" "$LOG_DIR/$name.log" -- \
    "${ONP[@]}" "$SPLITEE" "$role" --worker-id "$name" --metrics-port "$port"
  log "started $name (supervisor pid $(read_pid "$name"), metrics $addr:$port)"
}
for i in $(seq 1 "$N_EDGE"); do start_worker edge "edge-$i" edge; done
for i in $(seq 1 "$N_CLOUD"); do start_worker cloud "cloud-$i" dc; done
start_worker evaluator evaluator core   # accuracy, cost, regret from results + truth
start_worker exporter exporter core     # consumer lag, policy state from Redis

if (( wait )); then
  in_host core "$SPLITEE" wait-ready --edge "$N_EDGE" --cloud "$N_CLOUD" >&2
fi
if (( producers )) && ! is_running producers; then
  port=$((port + 1))
  on_host edge
  start_daemon producers "$WORK" "$LOG_DIR/producers.log" -- \
    "${ONP[@]}" "$SPLITEE" produce --metrics-port "$port"
  log "started the cameras (pid $(read_pid producers))"
fi
log "pipeline up; deploy/status.sh shows it, deploy/down.sh stops it"
