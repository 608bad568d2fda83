#!/usr/bin/env bash
# Stop the local Kafka broker started by deploy/kafka-start.sh.
# SIGTERM first (controlled shutdown, flushes logs), SIGKILL after
# $SPLITEE_STOP_TIMEOUT (default 20) s. A no-op when it is not running.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

stop_server kafka
