#!/usr/bin/env bash
# Regenerate assets/recording-5k: 2 cameras x 2,500 frames of the shipped sample, sent at max
# speed by `splitee produce` with the distortion schedules of assets/recording-5k.toml, and
# recorded live by `splitee record` (frames + truth, policy snapshots from Redis if it runs).
# Uses its own fresh topics and deletes them afterwards. Needs Kafka: bash deploy/servers-up.sh.
# Usage: bash assets/make-recording.sh [OUT]   (OUT defaults to assets/recording-5k; it must
# not exist yet)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${1:-assets/recording-5k}"
tag="rec5k-$(date +%s)"
export SPLITEE_CONFIG=assets/recording-5k.toml
export SPLITEE_KAFKA__FRAMES_TOPIC="$tag-frames" SPLITEE_KAFKA__TRUTH_TOPIC="$tag-truth"
export SPLITEE_KAFKA__OFFLOAD_TOPIC="$tag-offload" SPLITEE_KAFKA__RESULTS_TOPIC="$tag-results"
splitee=.venv/bin/splitee

"$splitee" topics create
"$splitee" record --topics frames,truth --out "$out" --count 5000 --from-beginning &
recorder=$!
"$splitee" produce --fps 100000
wait "$recorder"
"$splitee" topics delete --yes >/dev/null
du -sh "$out"
