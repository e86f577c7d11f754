{{/* vim: set filetype=mustache: */}}

{{- define "syncropel.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name: <release>-<chart>, or the release name alone when it already
contains the chart name. Kept to 40 characters so that suffixes such as "-steward-<dedicated>"
stay within the 63 of a Service name.
*/}}
{{- define "syncropel.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "syncropel.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every resource carries. */}}
{{- define "syncropel.labels" -}}
helm.sh/chart: {{ include "syncropel.chart" . }}
app.kubernetes.io/name: {{ include "syncropel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: syncropel
{{- end }}

{{/* Selector labels of one component: (dict "root" $ "component" "steward"). */}}
{{- define "syncropel.selectorLabels" -}}
app.kubernetes.io/name: {{ include "syncropel.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* All labels of one component: (dict "root" $ "component" "steward"). */}}
{{- define "syncropel.componentLabels" -}}
{{ include "syncropel.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Names. */}}
{{- define "syncropel.steward.fullname" -}}
{{- printf "%s-steward" (include "syncropel.fullname" .) }}
{{- end }}

{{- define "syncropel.dedicated.fullname" -}}
{{- printf "%s-steward-%s" (include "syncropel.fullname" .root) .name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "syncropel.directory.fullname" -}}
{{- printf "%s-directory" (include "syncropel.fullname" .) }}
{{- end }}

{{- define "syncropel.relay.fullname" -}}
{{- printf "%s-relay" (include "syncropel.fullname" .) }}
{{- end }}

{{/*
"true" when the relay's callers reach it through the chart's Ingress: every connection then comes
from the ingress controller, and per-address limits would count all callers as one.
*/}}
{{- define "syncropel.relay.behindIngress" -}}
{{- if and .Values.relay.enabled .Values.ingress.enabled .Values.ingress.relay.host -}}true{{- end -}}
{{- end }}

{{- define "syncropel.secretName" -}}
{{- printf "%s-secrets" (include "syncropel.fullname" .) }}
{{- end }}

{{/* image reference: (dict "image" .Values.image.steward "root" $). */}}
{{- define "syncropel.image" -}}
{{- if .image.digest -}}
{{ .image.repository }}@{{ .image.digest }}
{{- else -}}
{{ .image.repository }}:{{ .image.tag | default .root.Chart.AppVersion }}
{{- end -}}
{{- end }}

{{/*
Secret entries: the key each one has in the chart's Secret, and whether it is set.
*/}}
{{- define "syncropel.secretKeys" -}}
stewardDatabaseUrl: steward-database-url
kek: kek
previousKek: previous-kek
jwtSecret: jwt-secret
jwtPublicKey: jwt-public-key.pem
directoryRotationKey: directory-rotation-key
directoryDatabaseUrl: directory-database-url
relayDatabaseUrl: relay-database-url
relayCursorKey: relay-cursor-key
{{- end }}

{{/* "true" when the entry named .name of .root.Values.secrets has a value or an existingSecret. */}}
{{- define "syncropel.secretIsSet" -}}
{{- $entry := index .root.Values.secrets .name -}}
{{- if or $entry.value $entry.existingSecret.name -}}true{{- end -}}
{{- end }}

{{/* "true" when the chart creates its Secret: some secrets.*.value is set. */}}
{{- define "syncropel.createsSecret" -}}
{{- range $entry, $_ := include "syncropel.secretKeys" . | fromYaml -}}
{{- if (index $.Values.secrets $entry).value -}}true{{- end -}}
{{- end -}}
{{- end }}

{{/* The Secret name and key that hold entry .name: "name" and "key" as YAML. */}}
{{- define "syncropel.secretRef" -}}
{{- $entry := index .root.Values.secrets .name -}}
{{- $defaultKey := index (include "syncropel.secretKeys" . | fromYaml) .name -}}
{{- if $entry.existingSecret.name -}}
name: {{ $entry.existingSecret.name }}
key: {{ $entry.existingSecret.key | default $defaultKey }}
{{- else -}}
name: {{ include "syncropel.secretName" .root }}
key: {{ $defaultKey }}
{{- end -}}
{{- end }}

{{/* An env entry read from secret entry .name: (dict "root" $ "name" "kek" "env" "STEWARD_KEK"). */}}
{{- define "syncropel.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      {{- include "syncropel.secretRef" . | nindent 6 }}
{{- end }}

{{/*
Checks of values that the schema cannot express; fails the render with a message.
*/}}
{{- define "syncropel.validate" -}}
{{- $v := .Values -}}
{{- if not $v.baseDomain }}
{{- fail "baseDomain is required: the platform host, tenants being <label>.<baseDomain>" }}
{{- end }}
{{- if not (include "syncropel.secretIsSet" (dict "root" . "name" "stewardDatabaseUrl")) }}
{{- fail "secrets.stewardDatabaseUrl: set value or existingSecret.name (a postgres:// URL)" }}
{{- end }}
{{- if not (include "syncropel.secretIsSet" (dict "root" . "name" "kek")) }}
{{- fail "secrets.kek: set value or existingSecret.name (32 bytes as base64 or hex: openssl rand -base64 32)" }}
{{- end }}
{{- $jwtSecret := include "syncropel.secretIsSet" (dict "root" . "name" "jwtSecret") }}
{{- $jwtKey := include "syncropel.secretIsSet" (dict "root" . "name" "jwtPublicKey") }}
{{- if and $jwtSecret $jwtKey }}
{{- fail "secrets.jwtSecret and secrets.jwtPublicKey: set only one (HS256 secret or Ed25519 public key)" }}
{{- end }}
{{- if not (or $jwtSecret $jwtKey) }}
{{- fail "secrets.jwtSecret or secrets.jwtPublicKey: set one, the signup platform's JWT key" }}
{{- end }}
{{- if and (include "syncropel.secretIsSet" (dict "root" . "name" "directoryRotationKey")) (not $v.steward.directories) }}
{{- fail "secrets.directoryRotationKey needs steward.directories (new tenants are registered at the first)" }}
{{- end }}
{{- if and $v.directory.enabled (not (include "syncropel.secretIsSet" (dict "root" . "name" "directoryDatabaseUrl"))) }}
{{- fail "secrets.directoryDatabaseUrl: set value or existingSecret.name while directory.enabled (a postgres:// URL)" }}
{{- end }}
{{- if $v.relay.enabled }}
{{- if not (include "syncropel.secretIsSet" (dict "root" . "name" "relayDatabaseUrl")) }}
{{- fail "secrets.relayDatabaseUrl: set value or existingSecret.name while relay.enabled (a postgres:// URL)" }}
{{- end }}
{{- if not (include "syncropel.secretIsSet" (dict "root" . "name" "relayCursorKey")) }}
{{- fail "secrets.relayCursorKey: set value or existingSecret.name while relay.enabled (32 characters or more: openssl rand -base64 32)" }}
{{- end }}
{{- with $v.secrets.relayCursorKey.value }}
{{- if and (not $v.secrets.relayCursorKey.existingSecret.name) (lt (len .) 32) }}
{{- fail "secrets.relayCursorKey.value: at least 32 characters (openssl rand -base64 32); the relay refuses to serve with less" }}
{{- end }}
{{- end }}
{{- if gt (int $v.relay.autoscaling.minReplicas) (int $v.relay.autoscaling.maxReplicas) }}
{{- fail "relay.autoscaling.minReplicas must not exceed relay.autoscaling.maxReplicas" }}
{{- end }}
{{- end }}
{{- range $component := list "steward" "directory" "relay" }}
{{- $c := index $v $component }}
{{- $drain := add $c.shutdown.delaySeconds $c.shutdown.graceSeconds | int }}
{{- if lt (int $c.terminationGracePeriodSeconds) (add $drain 5 | int) }}
{{- fail (printf "%s.terminationGracePeriodSeconds (%v) must be at least shutdown.delaySeconds + shutdown.graceSeconds + 5 (%d): otherwise the kubelet kills the pod before it has drained" $component $c.terminationGracePeriodSeconds (add $drain 5)) }}
{{- end }}
{{- range $name, $_ := $c.extraEnv }}
{{- if has $name (list "DATABASE_URL" "STEWARD_KEK" "STEWARD_PREVIOUS_KEK" "STEWARD_JWT_SECRET" "STEWARD_DIRECTORY_ROTATION_KEY" "RELAY_CURSOR_KEY") }}
{{- fail (printf "%s.extraEnv.%s: secret values belong in secrets.* (extraEnv goes into a ConfigMap)" $component $name) }}
{{- end }}
{{- end }}
{{- end }}
{{- $seen := dict }}
{{- range $d := $v.dedicated }}
{{- if hasKey $seen (printf "name/%s" $d.name) }}
{{- fail (printf "dedicated: the name %q is used twice" $d.name) }}
{{- end }}
{{- $_ := set $seen (printf "name/%s" $d.name) true }}
{{- range $label := $d.tenants }}
{{- if hasKey $seen $label }}
{{- fail (printf "dedicated: tenant %q is listed under both %q and %q" $label (index $seen $label) $d.name) }}
{{- end }}
{{- $_ := set $seen $label $d.name }}
{{- end }}
{{- end }}
{{- end }}

{{/* Pod-level settings shared by every Deployment and Job. */}}
{{- define "syncropel.podSpecCommon" -}}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with .Values.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/* Environment shared by every container: logging and tracing. (dict "root" $ "service" "steward") */}}
{{- define "syncropel.telemetryEnv" -}}
SYNCROPEL_LOG_FORMAT: {{ .root.Values.logFormat | quote }}
{{- with .root.Values.logFilter }}
RUST_LOG: {{ . | quote }}
{{- end }}
{{- with .root.Values.otel.endpoint }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ . | quote }}
{{- end }}
OTEL_SERVICE_NAME: {{ index .root.Values.otel.serviceName .service | quote }}
{{- end }}

{{/* Prometheus scrape annotations of a pod. */}}
{{- define "syncropel.metricsAnnotations" -}}
{{- if and .Values.metrics.enabled .Values.metrics.podAnnotations -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.metrics.port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end }}

{{/* Checksums that roll the pods when their configuration or the chart's Secret changes. */}}
{{- define "syncropel.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
