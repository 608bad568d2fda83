#!/usr/bin/env bash
# Kafka's kafka-topics tool against the local brokers (bootstrap servers added for you; from
# the core host of deploy/hosts.sh while its topology is up).
# Examples:
#   deploy/kafka-topics.sh --list
#   deploy/kafka-topics.sh --create --topic smoke --partitions 2
#   deploy/kafka-topics.sh --describe --topic smoke
#   deploy/kafka-topics.sh --delete --topic smoke
# In secure mode (SPLITEE_SECURE=1) it logs in as $SPLITEE_KAFKA__SASL_USERNAME.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=secure.sh source-path=SCRIPTDIR
source "$DEPLOY_DIR/secure.sh"

[[ -f "$KAFKA_LIBS/kafka-tools-$KAFKA_VERSION.jar" ]] || die "Kafka jars missing: run deploy/install.sh --kafka-only"
if secure_mode; then
  require_env SPLITEE_KAFKA__SASL_USERNAME SPLITEE_KAFKA__SASL_PASSWORD
  client_config="$(umask 077 && mktemp)"
  trap 'rm -f "$client_config"' EXIT
  kafka_client_properties > "$client_config"
  set -- --command-config "$client_config" "$@"
fi
in_host core java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
  "-Dlog4j.configuration=file:$DEPLOY_DIR/kafka/log4j.properties" \
  -cp "$KAFKA_LIBS/*" org.apache.kafka.tools.TopicCommand \
  --bootstrap-server "$(kafka_bootstrap "$(kafka_started_nodes)")" "$@"
