#!/usr/bin/env bash
# Stop splitee's Prometheus (SIGTERM, SIGKILL after $SPLITEE_STOP_TIMEOUT s).
# A no-op when it is not running.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

stop_server prometheus
