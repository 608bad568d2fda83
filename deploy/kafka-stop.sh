#!/usr/bin/env bash
# Stop splitee's Kafka nodes started by deploy/kafka-start.sh (one, or deploy.brokers of them).
# SIGTERM to every node at once (controlled shutdown, flushes logs; one at a time, the last
# nodes would wait for a quorum that is gone), SIGKILL after $SPLITEE_STOP_TIMEOUT (default 20)
# s. A no-op when none is running.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

no_args "$@"
take_lock kafka
names=()
for f in "$RUN_DIR"/kafka.pid "$RUN_DIR"/kafka-[1-9].pid; do
  [[ -e "$f" ]] && names+=("$(basename "$f" .pid)")
done
running=()
for name in "${names[@]}"; do
  if is_running "$name"; then running+=("$name"); else rm -f "$(pid_file "$name")"; fi
done
if (( ! ${#running[@]} )); then
  log "kafka not running"
  exit 0
fi
declare -A pids jobs_of
for name in "${running[@]}"; do
  pids[$name]="$(read_pid "$name")"
  stop_pid "$name" &
  jobs_of[$name]=$!
done
rc=0
for name in "${running[@]}"; do
  if wait "${jobs_of[$name]}"; then
    log "$name stopped (pid ${pids[$name]})"
  else
    err "could not stop $name (pid ${pids[$name]})"
    rc=1
  fi
done
exit "$rc"
