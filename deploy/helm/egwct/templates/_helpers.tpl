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

{{/* The agent's AppArmor profile as the annotation Kubernetes before 1.30
reads (1.30 and later read securityContext.appArmorProfile). */}}
{{- define "egwct.appArmorAnnotation" -}}
{{- $p := .Values.securityContext.appArmorProfile -}}
{{- if eq $p.type "Unconfined" -}}
unconfined
{{- else if eq $p.type "RuntimeDefault" -}}
runtime/default
{{- else -}}
localhost/{{ required "securityContext.appArmorProfile.localhostProfile: the name of the Localhost profile" $p.localhostProfile }}
{{- end -}}
{{- end }}
