{{/* Names and labels shared by every template. */}}

{{- define "strata.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-scoped name; cluster-scoped objects (ClusterRoles...) use it to avoid clashes. */}}
{{- define "strata.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "strata.selectorLabels" -}}
app.kubernetes.io/name: {{ include "strata.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "strata.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "strata.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: strata
{{- end -}}

{{- define "strata.serviceAccountName" -}}
{{- include "strata.fullname" . }}-node
{{- end -}}

{{/* Directory holding the plugin's CSI socket on the host. */}}
{{- define "strata.socketDir" -}}
{{- printf "%s/plugins/%s" (trimSuffix "/" .Values.kubeletDir) .Values.driverName -}}
{{- end -}}

{{/* An image reference: repository@digest when a digest is set (the tag is then not used, a
     digest already names one image), else repository:tag (tag defaulting to .default). With
     .required (the value's name), an empty repository fails the render instead of guessing an
     image name that may not exist. */}}
{{- define "strata.image" -}}
{{- if and .required (not .image.repository) -}}
{{- fail (printf "%s is required: there is no published Strata image yet, so the chart will not guess one; build and push it (docs/cluster-install.md) and set %s=<registry>/strata-csi (a tag with images.plugin.tag, or a digest with images.plugin.digest=sha256:...)" .required .required) -}}
{{- end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (.image.tag | default .default) -}}
{{- end -}}
{{- end -}}
