{{/* Names and labels. */}}
{{- define "splitee.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "splitee.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "splitee.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "splitee.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one role: (dict "root" $ "role" "edge"). */}}
{{- define "splitee.selectorLabels" -}}
app.kubernetes.io/name: {{ include "splitee.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{- define "splitee.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "splitee.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The image of a role: the CUDA variant for cloud workers that get a GPU. */}}
{{- define "splitee.image" -}}
{{- $v := .root.Values.image -}}
{{- $tag := default .root.Chart.AppVersion $v.tag -}}
{{- if and (eq .role "cloud") (gt (int .root.Values.cloud.gpu) 0) -}}
{{- $tag = default (printf "%s-cuda" .root.Chart.AppVersion) $v.cudaTag -}}
{{- end -}}
{{- printf "%s:%s" $v.repository $tag -}}
{{- end -}}

{{/* The SASL protocols need a user and the Secret with its password. */}}
{{- define "splitee.sasl" -}}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol -}}
{{- if not (and .Values.kafka.sasl.username .Values.kafka.sasl.existingSecret) -}}
{{- fail "kafka.securityProtocol SASL_* needs kafka.sasl.username and kafka.sasl.existingSecret" -}}
{{- end -}}
true
{{- end -}}
{{- end -}}

{{- define "splitee.kafkaTls" -}}
{{- if has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL") -}}true{{- end -}}
{{- end -}}

{{/* Environment of every splitee process: where the servers are, topics, groups, secrets.
     These override the settings TOML (environment before file in splitee/settings.py). The
     Deployments add SPLITEE_CONFIG; the topics hook Job runs before the ConfigMap exists and
     needs none of it. */}}
{{- define "splitee.env" -}}
- name: SPLITEE_VAR_DIR
  value: /var/lib/splitee
- name: SPLITEE_DATA__CACHE_DIR
  value: /var/lib/splitee/cache
- name: HOME
  value: /var/lib/splitee
- name: SPLITEE_DEPLOY__METRICS_HOST
  value: 0.0.0.0
- name: SPLITEE_DEPLOY__BROKERS
  value: {{ .Values.kafka.brokers | quote }}
- name: SPLITEE_KAFKA__BOOTSTRAP
  value: {{ required "kafka.bootstrap is required" .Values.kafka.bootstrap | quote }}
- name: SPLITEE_KAFKA__PARTITIONS
  value: {{ .Values.kafka.partitions | quote }}
- name: SPLITEE_KAFKA__GROUP_PREFIX
  value: {{ .Values.kafka.groupPrefix | quote }}
- name: SPLITEE_KAFKA__FRAMES_TOPIC
  value: {{ .Values.kafka.topics.frames | quote }}
- name: SPLITEE_KAFKA__TRUTH_TOPIC
  value: {{ .Values.kafka.topics.truth | quote }}
- name: SPLITEE_KAFKA__OFFLOAD_TOPIC
  value: {{ .Values.kafka.topics.offload | quote }}
- name: SPLITEE_KAFKA__RESULTS_TOPIC
  value: {{ .Values.kafka.topics.results | quote }}
- name: SPLITEE_KAFKA__SECURITY_PROTOCOL
  value: {{ .Values.kafka.securityProtocol | quote }}
{{- if include "splitee.sasl" . }}
- name: SPLITEE_KAFKA__SASL_MECHANISM
  value: {{ .Values.kafka.sasl.mechanism | quote }}
- name: SPLITEE_KAFKA__SASL_USERNAME
  value: {{ .Values.kafka.sasl.username | quote }}
- name: SPLITEE_KAFKA__SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.passwordKey }}
{{- end }}
{{- if and (include "splitee.kafkaTls" .) .Values.kafka.tls.caSecret }}
- name: SPLITEE_KAFKA__SSL_CAFILE
  value: /etc/splitee/kafka-ca/{{ .Values.kafka.tls.caKey }}
{{- end }}
- name: SPLITEE_REDIS__URL
  value: {{ required "redis.url is required" .Values.redis.url | quote }}
- name: SPLITEE_REDIS__NAMESPACE
  value: {{ .Values.redis.keyNamespace | quote }}
{{- with .Values.redis.sentinel.addresses }}
- name: SPLITEE_REDIS__SENTINEL
  value: {{ toJson . | quote }}
- name: SPLITEE_REDIS__SENTINEL_MASTER
  value: {{ $.Values.redis.sentinel.master | quote }}
{{- end }}
{{- if .Values.redis.existingSecret }}
{{- with .Values.redis.username }}
- name: SPLITEE_REDIS__USERNAME
  value: {{ . | quote }}
{{- end }}
- name: SPLITEE_REDIS__PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret }}
      key: {{ .Values.redis.passwordKey }}
{{- end }}
{{- if .Values.redis.tls.caSecret }}
- name: SPLITEE_REDIS__TLS_CAFILE
  value: /etc/splitee/redis-ca/{{ .Values.redis.tls.caKey }}
{{- end }}
{{- end -}}

{{- define "splitee.volumeMounts" -}}
- name: state
  mountPath: /var/lib/splitee
- name: tmp
  mountPath: /tmp
{{- if and (include "splitee.kafkaTls" .) .Values.kafka.tls.caSecret }}
- name: kafka-ca
  mountPath: /etc/splitee/kafka-ca
  readOnly: true
{{- end }}
{{- if .Values.redis.tls.caSecret }}
- name: redis-ca
  mountPath: /etc/splitee/redis-ca
  readOnly: true
{{- end }}
{{- end -}}

{{- define "splitee.volumes" -}}
- name: state
  emptyDir: {}
- name: tmp
  emptyDir: {}
{{- if and (include "splitee.kafkaTls" .) .Values.kafka.tls.caSecret }}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafka.tls.caSecret }}
    items:
      - key: {{ .Values.kafka.tls.caKey }}
        path: {{ .Values.kafka.tls.caKey }}
{{- end }}
{{- if .Values.redis.tls.caSecret }}
- name: redis-ca
  secret:
    secretName: {{ .Values.redis.tls.caSecret }}
    items:
      - key: {{ .Values.redis.tls.caKey }}
        path: {{ .Values.redis.tls.caKey }}
{{- end }}
{{- end -}}
