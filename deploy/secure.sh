# shellcheck shell=bash disable=SC2034  # variables here are used by the scripts that source it
# deploy/secure.sh: the deploy scripts' opt-in secure mode. Source it after lib.sh, don't run it.
#
# With SPLITEE_SECURE=1, Kafka serves SASL_SSL only (SCRAM users created when its storage is
# formatted; the controller listener is TLS with client certificates) and Redis serves TLS only,
# with one ACL user and the default user off. Both present a certificate for 127.0.0.1 signed by
# a throwaway CA generated under $VAR_DIR/tls/ (ca.pem is what clients trust: the settings
# kafka.ssl_cafile and redis.tls_cafile default to it when SPLITEE_SECURE=1). The credentials come
# from the variables the settings read, so one environment configures servers and clients:
#   SPLITEE_KAFKA__SASL_USERNAME, SPLITEE_KAFKA__SASL_PASSWORD  the Kafka SCRAM user
#   SPLITEE_KAFKA__SASL_MECHANISM                               SCRAM-SHA-512 (default) or -256
#   SPLITEE_REDIS__USERNAME, SPLITEE_REDIS__PASSWORD            the Redis ACL user
#   SPLITEE_REDIS__NAMESPACE        its keys: <namespace>:* only (default splitee)
# The servers never store a client password in clear: Redis gets its SHA-256, Kafka keeps salted
# SCRAM hashes. It is in clear only while a tool runs: on kafka-storage's command line (format),
# and in the 0600 temporary file that deploy/kafka-topics.sh hands Kafka's topic tool.

SECURE="${SPLITEE_SECURE:-0}"
TLS_DIR="$VAR_DIR/tls"
SASL_MECHANISM="${SPLITEE_KAFKA__SASL_MECHANISM:-SCRAM-SHA-512}"

secure_mode() { [[ "$SECURE" == 1 ]]; }

# Die unless each named variable is set, non-empty, and a plain name (no spaces, quotes, ...)
# when it is a user or namespace name.
require_env() { # VAR...
  local v
  for v in "$@"; do
    [[ -n "${!v:-}" ]] || die "secure mode (SPLITEE_SECURE=1) needs $v"
    case "$v" in
      *USERNAME|*NAMESPACE)
        [[ "${!v}" =~ ^[A-Za-z0-9._-]+$ ]] || die "$v may hold letters, digits, '.', '_', '-' only" ;;
    esac
  done
}

# The throwaway CA and the server's certificate for 127.0.0.1, generated once per var dir (and
# again when it expires within a day): ca.pem, server.pem, server.key and keystore.pem (key and
# certificate together, for Kafka). The CA's key is deleted once it has signed: nothing else can
# ever be signed with it.
ensure_tls() {
  mkdir -p "$RUN_DIR" "$TLS_DIR" "$LOG_DIR"
  (
    flock 8
    if [[ -s "$TLS_DIR/keystore.pem" ]] &&
      openssl x509 -checkend 86400 -noout -in "$TLS_DIR/server.pem" >/dev/null 2>&1; then
      exit 0
    fi
    umask 077
    tmp="$(mktemp -d "$TLS_DIR/.new.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    openssl req -x509 "${ec[@]}" -keyout "$tmp/ca.key" -out "$tmp/ca.pem" -days 365 \
      -subj "/CN=splitee throwaway CA" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
    openssl req "${ec[@]}" -keyout "$tmp/server.key" -out "$tmp/server.csr" -subj "/CN=$HOST"
    printf '%s\n' "subjectAltName=IP:$HOST" basicConstraints=CA:FALSE \
      keyUsage=critical,digitalSignature extendedKeyUsage=serverAuth,clientAuth > "$tmp/ext"
    openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
      -set_serial "0x$(openssl rand -hex 8)" -days 365 -extfile "$tmp/ext" -out "$tmp/server.pem"
    cat "$tmp/server.key" "$tmp/server.pem" > "$tmp/keystore.pem"
    chmod 644 "$tmp/ca.pem" "$tmp/server.pem"
    for f in ca.pem server.pem server.key keystore.pem; do mv -f "$tmp/$f" "$TLS_DIR/$f"; done
  ) 8> "$RUN_DIR/tls.lock" >> "$LOG_DIR/tls.log" 2>&1 ||
    die "could not generate TLS certificates in $(relpath "$TLS_DIR") (see $(relpath "$LOG_DIR/tls.log"))"
  log "secure mode: TLS certificates in $(relpath "$TLS_DIR") (clients trust ca.pem)"
}

# Redis directives of secure mode, appended to the generated redis.conf (a later directive wins,
# so `port 0` closes the plaintext port).
secure_redis_config() {
  local hash ns="${SPLITEE_REDIS__NAMESPACE:-splitee}"
  hash="$(printf '%s' "$SPLITEE_REDIS__PASSWORD" | sha256sum | cut -d' ' -f1)"
  cat <<EOF
# Secure mode (SPLITEE_SECURE=1, deploy/secure.sh): TLS only, one ACL user, default user off.
port 0
tls-port $REDIS_PORT
tls-cert-file "$TLS_DIR/server.pem"
tls-key-file "$TLS_DIR/server.key"
tls-ca-cert-file "$TLS_DIR/ca.pem"
tls-auth-clients no
user default off
user $SPLITEE_REDIS__USERNAME on #$hash ~$ns:* resetchannels +@all -@dangerous
EOF
}

# redis-cli ARGS against our Redis (5 s at most): in secure mode over TLS as the ACL user, the
# password passed through the environment, not the command line.
redis_cli() { # ARGS...
  if secure_mode; then
    REDISCLI_AUTH="$SPLITEE_REDIS__PASSWORD" timeout 5 redis-cli --tls \
      --cacert "$TLS_DIR/ca.pem" --user "$SPLITEE_REDIS__USERNAME" -h "$HOST" -p "$REDIS_PORT" "$@"
  else
    timeout 5 redis-cli -h "$HOST" -p "$REDIS_PORT" "$@"
  fi
}

# Kafka in secure mode: append the SASL_SSL listeners (deploy/kafka/secure.properties.tmpl) to
# CONFIG, and set KAFKA_FORMAT_ARGS to the SCRAM users for `kafka-storage format`: the client
# user and the broker's own, whose random password stays in KAFKA_DIR/broker.secret (0600).
KAFKA_FORMAT_ARGS=()
secure_kafka_config() { # CONFIG KAFKA_DIR
  local config="$1" dir="$2" broker_pw
  case "$SASL_MECHANISM" in
    SCRAM-SHA-512|SCRAM-SHA-256) ;;
    *) die "SPLITEE_KAFKA__SASL_MECHANISM must be SCRAM-SHA-512 or SCRAM-SHA-256" ;;
  esac
  # kafka-storage's --add-scram splits on , = [ ] (and echoes the piece it cannot parse); a JAAS
  # line (kafka-topics.sh) ends a quoted password at " and unescapes \
  [[ "$SPLITEE_KAFKA__SASL_PASSWORD" =~ ^[^][,=\"\\[:space:]]+$ ]] ||
    die "SPLITEE_KAFKA__SASL_PASSWORD may not hold , = [ ] \" \\ or white space"
  (umask 077; [[ -s "$dir/broker.secret" ]] || openssl rand -hex 24 > "$dir/broker.secret")
  broker_pw="$(cat "$dir/broker.secret")"
  (
    umask 077
    render "$DEPLOY_DIR/kafka/secure.properties.tmpl" "$dir/secure.properties" \
      KAFKA_PORT="$KAFKA_PORT" KAFKA_CONTROLLER_PORT="$KAFKA_CONTROLLER_PORT" TLS_DIR="$TLS_DIR" \
      MECHANISM="$SASL_MECHANISM" MECHANISM_LC="${SASL_MECHANISM,,}" \
      BROKER_USER=splitee-broker BROKER_PASSWORD="$broker_pw"
    chmod 600 "$config"
    cat "$dir/secure.properties" >> "$config"
    rm -f "$dir/secure.properties"
  )
  KAFKA_FORMAT_ARGS=(
    --add-scram "$SASL_MECHANISM=[name=$SPLITEE_KAFKA__SASL_USERNAME,password=\"$SPLITEE_KAFKA__SASL_PASSWORD\"]"
    --add-scram "$SASL_MECHANISM=[name=splitee-broker,password=$broker_pw]"
  )
}

# SCRAM users exist only when the storage was formatted in secure mode, and a secure storage
# has no plaintext listener: refuse to start in the other mode than the one it was formatted in.
kafka_check_mode() { # KAFKA_DIR DATA_DIR
  local want=plain have
  secure_mode && want=secure
  if [[ ! -f "$2/meta.properties" ]]; then
    printf '%s\n' "$want" > "$1/security-mode"
    return 0
  fi
  have="$(cat "$1/security-mode" 2>/dev/null || echo plain)"
  [[ "$have" == "$want" ]] ||
    die "$(relpath "$2") was formatted in $have mode; this start is $want (SPLITEE_SECURE=$SECURE): use another SPLITEE_VAR_DIR or remove $(relpath "$1")"
}

# Kafka's client properties for the command-line tools in secure mode, on stdout (the caller
# keeps them in a 0600 file for as long as the tool runs).
kafka_client_properties() {
  printf '%s\n' security.protocol=SASL_SSL "sasl.mechanism=$SASL_MECHANISM" \
    ssl.truststore.type=PEM "ssl.truststore.location=$TLS_DIR/ca.pem" \
    "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"$SPLITEE_KAFKA__SASL_USERNAME\" password=\"$SPLITEE_KAFKA__SASL_PASSWORD\";"
}
