{{/*
Chart name, truncated to 63 characters (the DNS label limit).
*/}}
{{- define "cirasa.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name. Resource names append "-<service>", so keep room for the
longest suffix ("-accounting", "-scheduler", ...): truncate to 52 characters.
*/}}
{{- define "cirasa.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "cirasa.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "cirasa.labels" -}}
helm.sh/chart: {{ include "cirasa.chart" . }}
{{ include "cirasa.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cirasa
{{- end }}

{{/*
Selector labels (add app.kubernetes.io/component: <service> to select one service).
*/}}
{{- define "cirasa.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cirasa.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The image, tag defaulting to the chart's appVersion.
*/}}
{{- define "cirasa.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}

{{/*
Name of the ConfigMap holding the CIRASA config file.
*/}}
{{- define "cirasa.configMapName" -}}
{{- printf "%s-config" (include "cirasa.fullname" .) }}
{{- end }}

{{/*
Name of the shared data PVC.
*/}}
{{- define "cirasa.dataClaimName" -}}
{{- if .Values.persistence.existingClaim }}
{{- .Values.persistence.existingClaim }}
{{- else }}
{{- printf "%s-data" (include "cirasa.fullname" .) }}
{{- end }}
{{- end }}

{{/*
The operators' resources and the Secrets they create (docs: the RabbitMQ Cluster Operator names its
default user's Secret <cluster>-default-user with a connection_string key; the MongoDB Community
Operator writes a user's connection strings to spec.users[].connectionStringSecretName).
*/}}
{{- define "cirasa.rabbitmqClusterName" -}}
{{- printf "%s-rabbitmq" (include "cirasa.fullname" .) }}
{{- end }}

{{- define "cirasa.mongodbName" -}}
{{- printf "%s-mongodb" (include "cirasa.fullname" .) }}
{{- end }}

{{- define "cirasa.mongodbPasswordSecretName" -}}
{{- .Values.mongodbCommunity.passwordSecret.name | default (printf "%s-mongodb-password" (include "cirasa.fullname" .)) }}
{{- end }}

{{/*
Where the AMQP URL comes from, as JSON: {"name": Secret, "key": key}, or {} for rabbitmq.url.
*/}}
{{- define "cirasa.amqpSecret" -}}
{{- if .Values.rabbitmqCluster.enabled }}
{{- if .Values.rabbitmq.existingSecret.name }}
{{- fail "rabbitmqCluster.enabled takes the AMQP URL from the operator's Secret: leave rabbitmq.existingSecret.name empty" }}
{{- end }}
{{- dict "name" (printf "%s-default-user" (include "cirasa.rabbitmqClusterName" .)) "key" "connection_string" | toJson }}
{{- else if .Values.rabbitmq.existingSecret.name }}
{{- dict "name" .Values.rabbitmq.existingSecret.name "key" .Values.rabbitmq.existingSecret.key | toJson }}
{{- else }}
{{- dict | toJson }}
{{- end }}
{{- end }}

{{/*
Where the MongoDB URL comes from, as JSON: {"name": Secret, "key": key}, or {} for mongodb.url.
*/}}
{{- define "cirasa.mongodbSecret" -}}
{{- if .Values.mongodbCommunity.enabled }}
{{- if .Values.mongodb.existingSecret.name }}
{{- fail "mongodbCommunity.enabled takes the MongoDB URL from the operator's Secret: leave mongodb.existingSecret.name empty" }}
{{- end }}
{{- dict "name" (printf "%s-url" (include "cirasa.mongodbName" .)) "key" .Values.mongodbCommunity.connectionStringKey | toJson }}
{{- else if .Values.mongodb.existingSecret.name }}
{{- dict "name" .Values.mongodb.existingSecret.name "key" .Values.mongodb.existingSecret.key | toJson }}
{{- else }}
{{- dict | toJson }}
{{- end }}
{{- end }}

{{/*
The queues each service consumes, by routing key (cirasa/common/bus: <exchange>.<service>.<routing key>;
tests/deploy checks this against the services' subscriptions).
*/}}
{{- define "cirasa.consumedRoutingKeys" -}}
gateway: [job.state_changed, offer.made, offer.state_changed, job.submitted, usage.updated, job.staging]
planner: [task.proposed, offer.decision, job.state_changed, job.cancel_requested, job.staging]
scheduler: [job.submitted, job.cancel_requested]
monitor: [job.submitted, job.dispatched]
accounting: [task.proposed, job.submitted, job.state_changed, file.uploaded, file.deleted]
{{- end }}

{{- define "cirasa.exchange" -}}
{{- .Values.config.exchange | default "cirasa.events" }}
{{- end }}

{{/*
"true" when a platform runs jobs as subprocesses of the scheduler (backend local).
*/}}
{{- define "cirasa.hasLocalPlatform" -}}
{{- $local := false }}
{{- range .Values.config.platforms }}
{{- if eq (toString .backend) "local" }}
{{- $local = true }}
{{- end }}
{{- end }}
{{- $local }}
{{- end }}

{{/*
How a service's replica count is set: "fixed", "hpa" or "keda" (the context: dict "root" $ "name" n "svc" s).
With a local platform the scheduler runs the jobs itself: it must stay single.
*/}}
{{- define "cirasa.scaling" -}}
{{- $autoscaled := and .svc.autoscaling .svc.autoscaling.enabled }}
{{- if and (eq .name "scheduler") (eq (include "cirasa.hasLocalPlatform" .root) "true") (or $autoscaled (gt (int .svc.replicas) 1)) }}
{{- fail "a `local` platform runs its jobs inside the scheduler's pod: services.scheduler must stay at one replica, without autoscaling" }}
{{- end }}
{{- if not $autoscaled }}fixed
{{- else if and .root.Values.keda.enabled (ne (toString (index .svc.autoscaling "keda")) "false") }}keda
{{- else }}hpa
{{- end }}
{{- end }}

{{/*
Environment shared by every service (a list of EnvVar, unindented).
*/}}
{{- define "cirasa.env" -}}
- name: CIRASA_HTTP_HOST
  value: "0.0.0.0"
- name: CIRASA_HTTP_PORT
  value: {{ .Values.httpPort | quote }}
- name: CIRASA_AMQP_URL
{{- $amqp := include "cirasa.amqpSecret" . | fromJson }}
{{- if $amqp.name }}
  valueFrom:
    secretKeyRef:
      name: {{ $amqp.name | quote }}
      key: {{ $amqp.key | quote }}
{{- else }}
  value: {{ required "rabbitmq.url or rabbitmq.existingSecret.name is required" .Values.rabbitmq.url | quote }}
{{- end }}
{{- $mongodb := include "cirasa.mongodbSecret" . | fromJson }}
{{- if $mongodb.name }}
- name: CIRASA_MONGODB_URL
  valueFrom:
    secretKeyRef:
      name: {{ $mongodb.name | quote }}
      key: {{ $mongodb.key | quote }}
{{- else if .Values.mongodb.url }}
- name: CIRASA_MONGODB_URL
  value: {{ .Values.mongodb.url | quote }}
{{- end }}
- name: CIRASA_CONFIG
  value: /etc/cirasa/config.yaml
- name: CIRASA_DATA_DIR
  value: /data/files
- name: CIRASA_JOBS_DIR
  value: /data/jobs
- name: CIRASA_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: CIRASA_LOG_JSON
  value: {{ .Values.logJson | quote }}
- name: HOME
  value: /tmp
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Namespace of the Jobs of a kubernetes platform (the platform is the context).
*/}}
{{- define "cirasa.platformNamespace" -}}
{{- $opts := .platform.options | default dict }}
{{- $opts.namespace | default .root.Release.Namespace }}
{{- end }}

{{/*
The namespaces that receive Jobs, as a JSON list ("[]" when no kubernetes platform is configured).
*/}}
{{- define "cirasa.jobNamespaces" -}}
{{- $namespaces := list }}
{{- range .Values.config.platforms }}
{{- if eq (toString .backend) "kubernetes" }}
{{- $namespaces = append $namespaces (include "cirasa.platformNamespace" (dict "platform" . "root" $)) }}
{{- end }}
{{- end }}
{{- $namespaces | uniq | sortAlpha | toJson }}
{{- end }}

{{/*
Service accounts: every service's (no token), the job manager's (scheduler and monitor, when a
kubernetes platform is configured) and the jobs' own (no token).
*/}}
{{- define "cirasa.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cirasa.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "cirasa.jobManagerServiceAccountName" -}}
{{- printf "%s-job-manager" (include "cirasa.fullname" .) }}
{{- end }}

{{- define "cirasa.jobServiceAccountName" -}}
{{- printf "%s-job" (include "cirasa.fullname" .) }}
{{- end }}

{{/*
The CIRASA config file: .Values.config with the options of kubernetes platforms completed.
*/}}
{{- define "cirasa.config" -}}
{{- $config := deepCopy .Values.config }}
{{- $platforms := list }}
{{- range $config.platforms }}
{{- $platform := . }}
{{- if eq (toString .backend) "kubernetes" }}
{{- $defaults := dict
      "in_cluster" true
      "namespace" (include "cirasa.platformNamespace" (dict "platform" . "root" $))
      "data_pvc" (include "cirasa.dataClaimName" $)
      "mount_path" "/data"
      "runner_image" (include "cirasa.image" $)
      "run_as_user" $.Values.podSecurityContext.runAsUser
      "run_as_group" $.Values.podSecurityContext.runAsGroup
      "image_pull_policy" $.Values.image.pullPolicy }}
{{- if $.Values.serviceAccount.create }}
{{- $_ := set $defaults "service_account" (include "cirasa.jobServiceAccountName" $) }}
{{- end }}
{{- if $.Values.imagePullSecrets }}
{{- $secrets := list }}
{{- range $.Values.imagePullSecrets }}
{{- $secrets = append $secrets .name }}
{{- end }}
{{- $_ := set $defaults "image_pull_secrets" $secrets }}
{{- end }}
{{- $platform = merge (dict "options" (merge (.options | default dict) $defaults)) . }}
{{- end }}
{{- $platforms = append $platforms $platform }}
{{- end }}
{{- $_ := set $config "platforms" $platforms }}
{{- toYaml $config }}
{{- end }}
