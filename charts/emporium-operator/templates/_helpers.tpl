{{/* The chart's name, or nameOverride. */}}
{{- define "emporium-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name: fullnameOverride, else the release name when it
already contains the chart's name, else "<release>-<chart>".
*/}}
{{- define "emporium-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "emporium-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object of the release carries. */}}
{{- define "emporium-operator.labels" -}}
helm.sh/chart: {{ include "emporium-operator.chart" . }}
{{ include "emporium-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: emporium
{{- end }}

{{/* The stable labels that select the operator's pods. */}}
{{- define "emporium-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "emporium-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "emporium-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "emporium-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "emporium-operator.leaseName" -}}
{{- default (include "emporium-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/* repository:tag, or repository@digest when a digest is set. */}}
{{- define "emporium-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}
