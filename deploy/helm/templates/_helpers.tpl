{{/* vim: set filetype=mustache: */}}

{{/* The four services, in a fixed order. */}}
{{- define "switchyard.serviceNames" -}}
ingest decision executor review
{{- end -}}

{{/*
Fixed ports (defaults of switchyard/_settings.py; the chart sets every one explicitly so that
probes, Services and processes always agree).
*/}}
{{- define "switchyard.portsYaml" -}}
ingest:   {grpc: 7051, metrics: 9101, http: 8081}
decision: {grpc: 7052, metrics: 9102}
executor: {grpc: 7053, metrics: 9103}
review:   {grpc: 7054, metrics: 9104, http: 8080}
triton:   {http: 8000, grpc: 8001, metrics: 8002}   # both Triton pools (triton, triton-spill)
{{- end -}}

{{- define "switchyard.ports" -}}
{{- fromYaml (include "switchyard.portsYaml" .) | toJson -}}
{{- end -}}

{{- define "switchyard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "switchyard.fullname" -}}
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

{{/* "<fullname>-<component>", kept within the 63-character DNS label limit. */}}
{{- define "switchyard.componentName" -}}
{{- $root := index . 0 -}}{{- $component := index . 1 -}}
{{- printf "%s-%s" (include "switchyard.fullname" $root | trunc (int (sub 62 (len $component))) | trimSuffix "-") $component -}}
{{- end -}}

{{- define "switchyard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Common labels; call with (list $ "component"). */}}
{{- define "switchyard.labels" -}}
{{- $root := index . 0 -}}{{- $component := index . 1 -}}
helm.sh/chart: {{ include "switchyard.chart" $root }}
{{ include "switchyard.selectorLabels" (list $root $component) }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: switchyard
{{- with $root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "switchyard.selectorLabels" -}}
{{- $root := index . 0 -}}{{- $component := index . 1 -}}
app.kubernetes.io/name: {{ include "switchyard.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ $component }}
{{- end -}}

{{/* Labels that select every pod of the release. */}}
{{- define "switchyard.releaseSelector" -}}
app.kubernetes.io/name: {{ include "switchyard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "switchyard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "switchyard.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The ServiceAccount a service runs under: its own with serviceAccount.perService (and
     create), else the shared one; call with (list $ service). */}}
{{- define "switchyard.serviceServiceAccountName" -}}
{{- $root := index . 0 -}}{{- $service := index . 1 -}}
{{- if and $root.Values.serviceAccount.create $root.Values.serviceAccount.perService -}}
{{- include "switchyard.componentName" (list $root $service) -}}
{{- else -}}
{{- include "switchyard.serviceAccountName" $root -}}
{{- end -}}
{{- end -}}

{{/* repository:tag or repository@digest; call with (list $ imageValues). */}}
{{- define "switchyard.imageRef" -}}
{{- $root := index . 0 -}}{{- $image := index . 1 -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (toString (default $root.Chart.AppVersion $image.tag)) -}}
{{- end -}}
{{- end -}}

{{- define "switchyard.image" -}}
{{- include "switchyard.imageRef" (list . .Values.image) -}}
{{- end -}}

{{/* An env value as a string: integral floats without an exponent, booleans as 1/0. */}}
{{- define "switchyard.envValue" -}}
{{- $v := . -}}
{{- if kindIs "float64" $v -}}
{{- if eq $v (floor $v) -}}{{- $v | int64 | toString -}}{{- else -}}{{- $v | toString -}}{{- end -}}
{{- else if kindIs "bool" $v -}}
{{- ternary "1" "0" $v -}}
{{- else -}}
{{- $v | toString -}}
{{- end -}}
{{- end -}}

{{- define "switchyard.tritonUrl" -}}
{{- if .Values.triton.enabled -}}
{{- printf "%s:8001" (include "switchyard.componentName" (list . "triton")) -}}
{{- else -}}
{{- required "triton.externalUrl is required when triton.enabled is false" .Values.triton.externalUrl -}}
{{- end -}}
{{- end -}}

{{/*
The spill-over Triton (SWITCHYARD_TRITON_SPILL_URL): the chart's own pool when
tritonSpill.enabled, else tritonSpill.externalUrl; empty: no spill-over (one pool).
*/}}
{{- define "switchyard.tritonSpillUrl" -}}
{{- if .Values.tritonSpill.enabled -}}
{{- printf "%s:8001" (include "switchyard.componentName" (list . "triton-spill")) -}}
{{- else -}}
{{- .Values.tritonSpill.externalUrl -}}
{{- end -}}
{{- end -}}

{{/* Consumer group of a service (switchyard/_streams.py: "<prefix>switchyard-<service>"). */}}
{{- define "switchyard.consumerGroup" -}}
{{- $root := index . 0 -}}{{- $service := index . 1 -}}
{{- printf "%sswitchyard-%s" $root.Values.kafka.topicPrefix $service -}}
{{- end -}}

{{/* Checks that the schema cannot express in a readable way. */}}
{{- define "switchyard.validate" -}}
{{- $k := .Values.kafka -}}
{{- if hasPrefix "SASL_" $k.securityProtocol -}}
{{- if not $k.sasl.existingSecret -}}
{{- fail (printf "kafka.sasl.existingSecret is required when kafka.securityProtocol is %s" $k.securityProtocol) -}}
{{- end -}}
{{- if not $k.saslMechanism -}}
{{- fail (printf "kafka.saslMechanism is required when kafka.securityProtocol is %s" $k.securityProtocol) -}}
{{- end -}}
{{- end -}}
{{- range $key := list "triton" "tritonSpill" -}}
{{- $t := index $.Values $key -}}
{{- if and $t.enabled (not $t.gpu.enabled) (eq $t.instanceKind "KIND_GPU") -}}
{{- fail (printf "%s.instanceKind KIND_GPU needs %s.gpu.enabled: set instanceKind to KIND_CPU (or \"\") to run Triton without a GPU" $key $key) -}}
{{- end -}}
{{- if and (eq $t.modelRepository.source "pvc") (not $t.modelRepository.pvc.claimName) -}}
{{- fail (printf "%s.modelRepository.pvc.claimName is required when %s.modelRepository.source is pvc" $key $key) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.retrain.enabled (ne .Values.triton.modelRepository.source "pvc") -}}
{{- fail "retrain.enabled needs triton.modelRepository.source pvc: the retrain CronJob writes new router versions into that PersistentVolumeClaim (ReadWriteMany, or ReadWriteOnce with every pod on one node), which the Triton pods copy from; the image's repository cannot be written" -}}
{{- end -}}
{{- end -}}

{{/*
The sidecar of a Triton pool with retrain.enabled and a PVC repository: every
retrain.syncSeconds it copies each version directory of $SYNC_MODELS that is under /source
but not under /models into /models (a staging directory in the model's folder, then one
rename, so Triton's poll never sees half a version). A version is copied once it looks the
same on two passes in a row (names, sizes, modification times), so one still being written
is left for the next pass. It never rewrites config.pbtxt (the init container's instance-kind
rewrite stays) and never removes a version. SYNC_ONCE=1 runs one pass and exits (tests).
*/}}
{{- define "switchyard.modelSyncScript" -}}
set -u
trap 'exit 0' TERM INT
sync_pass() {
  for model in $SYNC_MODELS; do
    [ -d "$SOURCE/$model" ] && [ -d "$TARGET/$model" ] || continue
    for src in "$SOURCE/$model"/*; do
      version=${src##*/}
      case "$version" in ''|*[!0-9]*) continue ;; esac
      [ -d "$src" ] || continue
      [ -e "$TARGET/$model/$version" ] && continue
      signature=$(cd "$src" && find . -printf '%p %s %T@\n' | LC_ALL=C sort | cksum) || continue
      seen="$STATE/$model.$version"
      if [ "$(cat "$seen" 2>/dev/null)" != "$signature" ]; then
        printf '%s\n' "$signature" > "$seen"
        echo "model-sync: $model version $version found; copying it once it is unchanged"
        continue
      fi
      staging="$TARGET/$model/.incoming-$version"
      rm -rf "$staging"
      if cp -R "$src" "$staging" \
          && find "$staging" -name __pycache__ -type d -prune -exec rm -rf {} + \
          && chmod -R a+rX "$staging" \
          && mv "$staging" "$TARGET/$model/$version"; then
        echo "model-sync: $model version $version copied; Triton loads it on its next poll"
      else
        echo "model-sync: copying $model version $version failed; retrying" >&2
        rm -rf "$staging"
      fi
    done
  done
}
mkdir -p "$STATE"
while :; do
  sync_pass
  if [ "${SYNC_ONCE:-0}" = 1 ]; then exit 0; fi
  sleep "$SYNC_SECONDS" &
  wait $!
done
{{- end -}}

{{/* Environment of a Switchyard container: (list $root workload), the workload one of
ingest, decision, executor, review (the services), hooks, purge, retrain (the Jobs). An
entry of config.secrets with `workloads` goes to those only; without, to every one. */}}
{{- define "switchyard.env" -}}
{{- $workload := index . 1 -}}
{{- with index . 0 -}}
{{- $ports := fromJson (include "switchyard.ports" .) -}}
{{- $k := .Values.kafka -}}
- name: SWITCHYARD_BIND_HOST
  value: "0.0.0.0"
- name: SWITCHYARD_ENVIRONMENT
  value: {{ .Values.config.environment | quote }}
- name: SWITCHYARD_LOG_LEVEL
  value: {{ .Values.config.logLevel | quote }}
- name: SWITCHYARD_LOG_FORMAT
  value: {{ .Values.config.logFormat | quote }}
- name: SWITCHYARD_STATE_DIR
  value: /tmp/switchyard
- name: SWITCHYARD_KAFKA_BOOTSTRAP_SERVERS
  value: {{ $k.bootstrapServers | quote }}
- name: SWITCHYARD_KAFKA_TOPIC_PREFIX
  value: {{ $k.topicPrefix | quote }}
- name: SWITCHYARD_KAFKA_PARTITIONS
  value: {{ $k.partitions | int64 | quote }}
- name: SWITCHYARD_KAFKA_REPLICATION_FACTOR
  value: {{ $k.replicationFactor | int64 | quote }}
- name: SWITCHYARD_KAFKA_SESSION_TIMEOUT_MS
  value: {{ $k.sessionTimeoutMs | int64 | quote }}
- name: SWITCHYARD_KAFKA_SECURITY_PROTOCOL
  value: {{ $k.securityProtocol | quote }}
- name: SWITCHYARD_KAFKA_SASL_MECHANISM
  value: {{ $k.saslMechanism | quote }}
{{- if $k.sasl.existingSecret }}
- name: SWITCHYARD_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $k.sasl.existingSecret | quote }}
      key: {{ $k.sasl.usernameKey | quote }}
- name: SWITCHYARD_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $k.sasl.existingSecret | quote }}
      key: {{ $k.sasl.passwordKey | quote }}
{{- end }}
{{- if $k.tls.existingSecret }}
- name: SWITCHYARD_KAFKA_SSL_CAFILE
  value: {{ printf "/etc/switchyard/kafka-tls/%s" $k.tls.caKey | quote }}
{{- end }}
- name: SWITCHYARD_POSTGRES_DSN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.postgres.dsnSecret.name | quote }}
      key: {{ .Values.postgres.dsnSecret.key | quote }}
- name: SWITCHYARD_POSTGRES_SCHEMA
  value: {{ .Values.postgres.schema | quote }}
- name: SWITCHYARD_POSTGRES_POOL_MIN
  value: {{ .Values.postgres.poolMin | int64 | quote }}
- name: SWITCHYARD_POSTGRES_POOL_MAX
  value: {{ .Values.postgres.poolMax | int64 | quote }}
- name: SWITCHYARD_TRITON_URL
  value: {{ include "switchyard.tritonUrl" . | quote }}
{{- with include "switchyard.tritonSpillUrl" . }}
- name: SWITCHYARD_TRITON_SPILL_URL
  value: {{ . | quote }}
{{- end }}
{{- range $service := splitList " " (include "switchyard.serviceNames" .) }}
- name: {{ printf "SWITCHYARD_%s_GRPC_PORT" (upper $service) }}
  value: {{ (index $ports $service).grpc | int64 | quote }}
- name: {{ printf "SWITCHYARD_%s_METRICS_PORT" (upper $service) }}
  value: {{ (index $ports $service).metrics | int64 | quote }}
{{- end }}
- name: SWITCHYARD_REVIEW_WEB_PORT
  value: {{ $ports.review.http | int64 | quote }}
- name: SWITCHYARD_INGEST_REST_PORT
  value: {{ $ports.ingest.http | int64 | quote }}
- name: SWITCHYARD_OTEL_EXPORTER
  value: {{ .Values.telemetry.otelExporter | quote }}
- name: SWITCHYARD_OTEL_ENDPOINT
  value: {{ .Values.telemetry.otelEndpoint | quote }}
{{- if and .Values.auth.apiKeysSecret.name (has $workload (splitList " " (include "switchyard.serviceNames" .))) }}
{{- /* the services authenticate callers with them; the Jobs serve no one */}}
- name: SWITCHYARD_API_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ .Values.auth.apiKeysSecret.name | quote }}
      key: {{ .Values.auth.apiKeysSecret.key | quote }}
{{- end }}
{{- range $name, $value := .Values.config.settings }}
- name: {{ printf "SWITCHYARD_%s" (upper $name) }}
  value: {{ include "switchyard.envValue" $value | quote }}
{{- end }}
{{- range $name, $ref := .Values.config.secrets }}
{{- if or (not $ref.workloads) (has $workload $ref.workloads) }}
- name: {{ printf "SWITCHYARD_%s" (upper $name) }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.existingSecret | quote }}
      key: {{ $ref.key | quote }}
{{- end }}
{{- end }}
{{- with .Values.tls }}
{{- if .existingSecret }}
- name: SWITCHYARD_TLS_CERT_FILE
  value: {{ printf "/etc/switchyard/tls/%s" .certKey | quote }}
- name: SWITCHYARD_TLS_KEY_FILE
  value: {{ printf "/etc/switchyard/tls/%s" .keyKey | quote }}
{{- if .mutual }}
- name: SWITCHYARD_TLS_CLIENT_CA_FILE
  value: {{ printf "/etc/switchyard/tls/%s" .caKey | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}
{{- end -}}

{{/*
`switchyard health` arguments that reach a service over the configured TLS (none for
plaintext); call with (list $ "service"). The certificate is checked against the Service name.
*/}}
{{- define "switchyard.healthTlsArgs" -}}
{{- $root := index . 0 -}}{{- $service := index . 1 -}}
{{- with $root.Values.tls -}}
{{- if .existingSecret -}}
{{- $args := list "--ca" (printf "/etc/switchyard/tls/%s" .caKey) "--server-name" (printf "%s.%s.svc" (include "switchyard.componentName" (list $root $service)) $root.Release.Namespace) -}}
{{- if .mutual -}}
{{- $args = concat $args (list "--cert" (printf "/etc/switchyard/tls/%s" .certKey) "--key" (printf "/etc/switchyard/tls/%s" .keyKey)) -}}
{{- end -}}
{{- toJson $args -}}
{{- else -}}
[]
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Volumes every Switchyard pod mounts: /tmp and, when configured, the Kafka CA. */}}
{{- define "switchyard.commonVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpVolume.sizeLimit }}
{{- if .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafka.tls.existingSecret | quote }}
    defaultMode: 0444
    items:
      - key: {{ .Values.kafka.tls.caKey | quote }}
        path: {{ .Values.kafka.tls.caKey | quote }}
{{- end }}
{{- if .Values.tls.existingSecret }}
- name: grpc-tls
  secret:
    secretName: {{ .Values.tls.existingSecret | quote }}
    defaultMode: 0440
    items:
      {{- range $key := uniq (list .Values.tls.certKey .Values.tls.keyKey .Values.tls.caKey) }}
      - key: {{ $key | quote }}
        path: {{ $key | quote }}
      {{- end }}
{{- end }}
{{- end -}}

{{- define "switchyard.commonVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  mountPath: /etc/switchyard/kafka-tls
  readOnly: true
{{- end }}
{{- if .Values.tls.existingSecret }}
- name: grpc-tls
  mountPath: /etc/switchyard/tls
  readOnly: true
{{- end }}
{{- end -}}

{{- define "switchyard.metricsAnnotations" -}}
{{- $root := index . 0 -}}{{- $port := index . 1 -}}
{{- if $root.Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ $port | int64 | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end -}}

{{/* NetworkPolicy rules shared by several components. */}}
{{- define "switchyard.ingress.prometheus" -}}
# Prometheus -> metrics
- ports:
    - port: metrics
      protocol: TCP
  {{- with .Values.networkPolicy.prometheus }}
  from:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{- define "switchyard.egress.dns" -}}
# DNS
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
  {{- with .Values.networkPolicy.dns.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{- define "switchyard.egress.kafka" -}}
# Kafka
- ports:
    {{- range .Values.networkPolicy.kafka.ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
  {{- with .Values.networkPolicy.kafka.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{- define "switchyard.egress.postgres" -}}
# PostgreSQL
- ports:
    {{- range .Values.networkPolicy.postgres.ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
  {{- with .Values.networkPolicy.postgres.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{- define "switchyard.blobStoreS3" -}}
{{- if eq (index .Values.config.settings "blob_store" | default "postgres") "s3" -}}true{{- end -}}
{{- end -}}

{{- define "switchyard.egress.blobStore" -}}
{{- if include "switchyard.blobStoreS3" . -}}
# the S3-compatible blob store (claim-checked documents)
- ports:
    {{- range .Values.networkPolicy.blobStore.ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
  {{- with .Values.networkPolicy.blobStore.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
{{- end -}}

{{- define "switchyard.egress.otel" -}}
{{- if eq .Values.telemetry.otelExporter "otlp" -}}
# OpenTelemetry collector
- ports:
    {{- range .Values.networkPolicy.otel.ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
  {{- with .Values.networkPolicy.otel.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
{{- end -}}

{{- /* A Job's pod placement from its values (purge, retrain, hooks): nodeSelector,
tolerations, affinity, priorityClassName, each only when set. */ -}}
{{- define "switchyard.jobScheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end -}}

{{/*
A workload's topologySpreadConstraints: (list $root component values). The values' own list
when given; otherwise, with `spread: soft` (the default), one soft constraint over nodes and
one over zones on the component's pods (ScheduleAnyway: a one-node cluster still schedules);
`spread: none`, nothing.
*/}}
{{- define "switchyard.topologySpread" -}}
{{- $root := index . 0 -}}{{- $component := index . 1 -}}{{- $v := index . 2 -}}
{{- if $v.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml $v.topologySpreadConstraints | nindent 2 }}
{{- else if eq ($v.spread | default "soft") "soft" }}
topologySpreadConstraints:
{{- range $key := list "kubernetes.io/hostname" "topology.kubernetes.io/zone" }}
  - maxSkew: 1
    topologyKey: {{ $key }}
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "switchyard.selectorLabels" (list $root $component) | nindent 8 }}
{{- end }}
{{- end }}
{{- end -}}
