{{/* Names and labels shared by the templates. */}}

{{- define "ebb.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ebb.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ebb.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ebb.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ebb.metricsServiceName" -}}
{{- printf "%s-metrics-api" (include "ebb.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ebb.tlsSecretName" -}}
{{- default (printf "%s-metrics-api-tls" (include "ebb.fullname" .)) .Values.metricsApi.tls.existingSecret -}}
{{- end -}}

{{- define "ebb.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ebb.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ebb.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "ebb.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ebb
{{- end -}}

{{/* Refuse values that cannot work together. */}}
{{- define "ebb.validate" -}}
{{- if not (has .Values.scaling.mode (list "hpa" "direct")) -}}
{{- fail (printf "scaling.mode must be hpa or direct, got %q" .Values.scaling.mode) -}}
{{- end -}}
{{- if and (eq .Values.scaling.mode "hpa") (not .Values.metricsApi.enabled) -}}
{{- fail "scaling.mode=hpa needs metricsApi.enabled=true: the HPAs read their metrics from it" -}}
{{- end -}}
{{- if not (has .Values.metricsApi.auth (list "delegated" "none")) -}}
{{- fail (printf "metricsApi.auth must be delegated or none, got %q" .Values.metricsApi.auth) -}}
{{- end -}}
{{- end -}}
