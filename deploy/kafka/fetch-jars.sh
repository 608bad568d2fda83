#!/usr/bin/env bash
# Fetch the Apache Kafka broker jars (version pinned in deploy/kafka/pom.xml)
# from Maven Central into the shared cache:
#   ${SPLITEE_CACHE_DIR:-$HOME/.cache/splitee}/kafka-<version>/libs
# No-op when the jars are already there for the current pom.xml.
# Usage: deploy/kafka/fetch-jars.sh [--force]
set -euo pipefail
# shellcheck source=../lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

POM="$DEPLOY_DIR/kafka/pom.xml"
MARKER="$KAFKA_LIBS/.complete"   # holds the sha256 of the pom the jars came from
force=0
case "${1:-}" in
  --force) force=1 ;;
  "") ;;
  -h|--help) usage; exit 0 ;;
  *) die "unknown argument: $1 (try --help)" ;;
esac

[[ -n "$KAFKA_VERSION" ]] || die "could not read <kafka.version> from $(relpath "$POM")"
pom_sum="$(sha256sum "$POM" | cut -d' ' -f1)"

jars_ok() {
  [[ -f "$MARKER" && "$(cat "$MARKER")" == "$pom_sum" && -f "$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar" ]]
}

if (( ! force )) && jars_ok; then
  exit 0
fi

command -v mvn >/dev/null 2>&1 || die "mvn not found: run deploy/install.sh (or apt-get install maven)"

parent="$(dirname "$KAFKA_LIBS")"
mkdir -p "$parent"
# Several clones share the cache: serialise fetches.
exec 9> "$parent/.fetch.lock"
flock 9
if (( ! force )) && jars_ok; then exit 0; fi   # another process just did it

log "fetching Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIBS ..."
tmp="$(mktemp -d "$parent/libs.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS
if ! mvn -q -B -f "$POM" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$tmp" > "$tmp.mvn.log" 2>&1; then
  cat "$tmp.mvn.log" >&2
  rm -f "$tmp.mvn.log"
  die "maven failed to fetch the Kafka jars"
fi
rm -f "$tmp.mvn.log"
[[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || die "kafka_2.13-$KAFKA_VERSION.jar missing after fetch"
printf '%s\n' "$pom_sum" > "$tmp/.complete"
rm -rf "$KAFKA_LIBS"
mv "$tmp" "$KAFKA_LIBS"
trap - EXIT
log "Kafka $KAFKA_VERSION: $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars in $((SECONDS - start))s"
