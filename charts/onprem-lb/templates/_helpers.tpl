{{/*
onprem-lb.image: the reference of one onprem-lb image, <image.registry>/<repository>:<tag>.
Called with (dict "root" $ "image" .Values.<component>.image); the tag falls back to image.tag,
then to the chart's appVersion.
*/}}
{{- define "onprem-lb.image" -}}
{{- $tag := .image.tag | default .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- printf "%s/%s:%s" .root.Values.image.registry .image.repository $tag -}}
{{- end }}

{{/*
onprem-lb.poolFile: the IP-pool file, made of the values that are its keys.
*/}}
{{- define "onprem-lb.poolFile" -}}
{{- pick .Values "pools" "dataplane" "loadBalancerClass" "bgp" | toYaml -}}
{{- end }}

{{/*
onprem-lb.metricsAddress: the speaker's --metrics-bind-address, host:port ([host]:port for IPv6).
*/}}
{{- define "onprem-lb.metricsAddress" -}}
{{- $m := .Values.speaker.metrics -}}
{{- if contains ":" $m.host -}}
[{{ $m.host }}]:{{ $m.port }}
{{- else -}}
{{ $m.host }}:{{ $m.port }}
{{- end -}}
{{- end }}

{{/*
onprem-lb.probeHost: where the kubelet reaches the speaker's /healthz: the metrics host, or the
node's loopback when the speaker listens on every address.
*/}}
{{- define "onprem-lb.probeHost" -}}
{{- $host := .Values.speaker.metrics.host -}}
{{- if has $host (list "" "0.0.0.0" "::") -}}
127.0.0.1
{{- else -}}
{{ $host }}
{{- end -}}
{{- end }}

{{/*
onprem-lb.memberlistSecret: the name of the Secret holding the speakers' gossip keys.
*/}}
{{- define "onprem-lb.memberlistSecret" -}}
{{- .Values.speaker.memberlist.existingSecret | default "onprem-speaker-memberlist" -}}
{{- end }}
