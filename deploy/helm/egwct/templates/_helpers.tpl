{{/* Labels of every object. */}}
{{- define "egwct.labels" -}}
app.kubernetes.io/name: egwct
app.kubernetes.io/part-of: egwct
{{- end }}

{{/* The agent's image: repository:tag, or repository@digest with useDigest (Cilium's convention). */}}
{{- define "egwct.image" -}}
{{- $tag := .Values.image.tag | default (printf "v%s" .Chart.AppVersion) -}}
{{- if and .Values.image.useDigest .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ $tag }}
{{- end -}}
{{- end }}

{{- define "egwct.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default "egwct" -}}
{{- end }}
