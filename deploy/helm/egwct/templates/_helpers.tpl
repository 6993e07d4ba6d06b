{{/* Labels of every object. */}}
{{- define "egwct.labels" -}}
app.kubernetes.io/name: egwct
app.kubernetes.io/part-of: egwct
{{- end }}

{{/* The agent's image, as Cilium's chart makes it: override as it is, else
repository:tag, followed by @digest with useDigest. */}}
{{- define "egwct.image" -}}
{{- $i := .Values.image -}}
{{- if $i.override -}}
{{ $i.override }}
{{- else -}}
{{- if and $i.useDigest (not $i.digest) -}}
{{ fail "image.useDigest needs image.digest (sha256:...)" }}
{{- end -}}
{{ $i.repository }}:{{ $i.tag | default (printf "v%s" .Chart.AppVersion) }}{{ if $i.useDigest }}@{{ $i.digest }}{{ end }}
{{- end -}}
{{- end }}

{{- define "egwct.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default "egwct" -}}
{{- end }}
