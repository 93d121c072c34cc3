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
Environment shared by every service (a list of EnvVar, unindented).
*/}}
{{- define "cirasa.env" -}}
- name: CIRASA_HTTP_HOST
  value: "0.0.0.0"
- name: CIRASA_HTTP_PORT
  value: {{ .Values.httpPort | quote }}
- name: CIRASA_AMQP_URL
{{- if and .Values.existingSecret.name .Values.existingSecret.amqpUrlKey }}
  valueFrom:
    secretKeyRef:
      name: {{ .Values.existingSecret.name | quote }}
      key: {{ .Values.existingSecret.amqpUrlKey | quote }}
{{- else }}
  value: {{ .Values.env.amqpUrl | quote }}
{{- end }}
{{- if and .Values.existingSecret.name .Values.existingSecret.mongodbUrlKey }}
- name: CIRASA_MONGODB_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.existingSecret.name | quote }}
      key: {{ .Values.existingSecret.mongodbUrlKey | quote }}
{{- else if .Values.env.mongodbUrl }}
- name: CIRASA_MONGODB_URL
  value: {{ .Values.env.mongodbUrl | quote }}
{{- end }}
- name: CIRASA_CONFIG
  value: /etc/cirasa/config.yaml
- name: CIRASA_DATA_DIR
  value: /data/files
- name: CIRASA_JOBS_DIR
  value: /data/jobs
- name: CIRASA_LOG_LEVEL
  value: {{ .Values.env.logLevel | quote }}
- name: CIRASA_LOG_JSON
  value: {{ .Values.env.logJson | quote }}
- name: HOME
  value: /tmp
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}
