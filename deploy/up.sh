#!/usr/bin/env bash
# Start the whole pipeline from one settings file:
#   servers (Kafka, Redis, Prometheus; installed when missing), the virtual environment,
#   the topics, N edge workers, M cloud workers (N, M from [deploy] in the settings),
#   and the cameras (unless --no-producers).
#   Also the evaluator and the exporter (observability); every process serves metrics on
#   deploy.metrics_port_base + i and registers itself with Prometheus.
#   Workers, evaluator and exporter run under a supervisor (deploy/lib.sh: supervise) that
#   restarts them when they die; deploy/status.sh shows the restarts.
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
read -r N_EDGE N_CLOUD PORT_BASE KAFKA_BROKERS BOOTSTRAP_SET < <("$REPO/.venv/bin/python" -c '
from splitee.settings import Settings
s = Settings()
d = s.deploy
print(d.edge_workers, d.cloud_workers, d.metrics_port_base, d.brokers,
      int("bootstrap" in s.kafka.model_fields_set))')
export KAFKA_BROKERS
"$DEPLOY_DIR/servers-up.sh"
# Several brokers: every process bootstraps from all of them (unless the settings say otherwise).
if (( KAFKA_BROKERS > 1 && ! BOOTSTRAP_SET )); then
  SPLITEE_KAFKA__BOOTSTRAP="$(kafka_bootstrap "$KAFKA_BROKERS")"
  export SPLITEE_KAFKA__BOOTSTRAP
fi
SPLITEE="$REPO/.venv/bin/splitee"
"$SPLITEE" topics create >&2

WORK="$VAR_DIR/workers"
port=$PORT_BASE
start_worker() { # ROLE NAME
  local role="$1" name="$2"
  port=$((port + 1))
  if is_running "$name"; then return 0; fi
  start_supervised "$name" "$WORK" "$LOG_DIR/$name.log" -- \
    "$SPLITEE" "$role" --worker-id "$name" --metrics-port "$port"
  log "started $name (supervisor pid $(read_pid "$name"), metrics 127.0.0.1:$port)"
}
for i in $(seq 1 "$N_EDGE"); do start_worker edge "edge-$i"; done
for i in $(seq 1 "$N_CLOUD"); do start_worker cloud "cloud-$i"; done
start_worker evaluator evaluator   # accuracy, cost, regret from results + truth
start_worker exporter exporter     # consumer lag, policy state from Redis

if (( wait )); then
  "$SPLITEE" wait-ready --edge "$N_EDGE" --cloud "$N_CLOUD" >&2
fi
if (( producers )) && ! is_running producers; then
  port=$((port + 1))
  start_daemon producers "$WORK" "$LOG_DIR/producers.log" -- "$SPLITEE" produce --metrics-port "$port"
  log "started the cameras (pid $(read_pid producers))"
fi
log "pipeline up; deploy/status.sh shows it, deploy/down.sh stops it"
