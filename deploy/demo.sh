#!/usr/bin/env bash
# The demo: sets up a fresh machine (virtual environment, Kafka jars, Redis, Prometheus),
# starts the pipeline, streams CIFAR-10 frames from 2 cameras with distortion schedules,
# prints a summary (its last line one JSON object) and stops everything it started.
# Usage: deploy/demo.sh [--config FILE] [--record DIR]   (default: deploy/demo.toml)
#   --record DIR: also record the run's frames and truth into DIR (a new folder), for
#   `splitee replay --offline DIR`: the offline figure on exactly the frames the run saw.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

config="$DEPLOY_DIR/demo.toml"
record=""
while [ $# -gt 0 ]; do
  case "$1" in
    --config) config="$2"; shift 2 ;;
    --record) record="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument: $1 (try --help)" ;;
  esac
done
[ -z "$record" ] || [ ! -e "$record" ] || die "--record $record: it exists already"
SPLITEE_CONFIG="$(cd "$(dirname "$config")" && pwd -P)/$(basename "$config")"
export SPLITEE_CONFIG

cleanup() { "$DEPLOY_DIR/down.sh" >/dev/null 2>&1 || true; }
trap cleanup EXIT

"$DEPLOY_DIR/setup.sh" >&2
"$DEPLOY_DIR/up.sh" --no-producers
SPLITEE="$REPO/.venv/bin/splitee"
"$SPLITEE" policy reset >&2
RUN_ID="demo-$(date +%s)"
recorder=""
if [ -n "$record" ]; then
  frames=$("$REPO/.venv/bin/python" -c 'from splitee.settings import load_settings
s = load_settings(None)
print(s.producer.count * len(s.producer.cameras))')
  "$SPLITEE" record --topics frames,truth --count "$frames" --out "$record" --no-progress \
    > "$record.log" 2>&1 &
  recorder=$!
  for _ in $(seq 120); do  # subscribed at the topics' ends before the first frame is sent
    grep -q "^recording " "$record.log" 2>/dev/null && break
    kill -0 "$recorder" 2>/dev/null || die "the recorder stopped: $(cat "$record.log")"
    sleep 0.5
  done
fi
log "streaming (run id $RUN_ID) ..."
"$SPLITEE" produce --run-id "$RUN_ID" >&2
log "waiting for every frame's result ..."
"$SPLITEE" summary --expect 1 --run-id "$RUN_ID" --timeout 180
if [ -n "$recorder" ]; then
  wait "$recorder" && log "recorded into $record ($record.log)"
fi
