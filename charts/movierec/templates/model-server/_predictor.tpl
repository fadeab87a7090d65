{{/* A KServe PredictorSpec for (dict "root" $ "target" (dict "alias" .. "storageUri" ..)). */}}
{{- define "movierec.predictor" -}}
{{- $root := .root -}}
{{- $m := $root.Values.modelServer -}}
{{- $c := dict "root" $root "component" "model-server" -}}
serviceAccountName: {{ include "movierec.componentName" $c }}
automountServiceAccountToken: false
minReplicas: {{ $m.minReplicas }}
maxReplicas: {{ $m.maxReplicas }}
scaleMetric: {{ $m.scaleMetric }}
scaleTarget: {{ $m.scaleTarget }}
timeout: {{ $m.timeoutSeconds }}
labels:
  {{- include "movierec.labels" $c | nindent 2 }}
  movierec.io/alias: {{ .target.alias }}
securityContext:
  {{- include "movierec.podSecurityContext" $root | nindent 2 }}
{{- if $m.logger.enabled }}
logger:
  mode: {{ $m.logger.mode }}
  url: {{ include "movierec.driftOnlineUrl" $root }}
{{- end }}
model:
  name: kserve-container
  modelFormat:
    name: {{ $m.modelFormat }}
  runtime: {{ include "movierec.componentName" (dict "root" $root "component" "runtime") }}
  storageUri: {{ .target.storageUri }}
  args:
    {{- if eq $m.storageLayout "registry" }}
    {{- include "movierec.platformArgsWith" (dict "root" $root "registryRoot" "/mnt/models" "kafka" true) | nindent 4 }}
    - serving.alias={{ .target.alias }}
    {{- else }}
    {{- include "movierec.platformArgs" $root | nindent 4 }}
    - serving.model_dir=/mnt/models
    {{- end }}
    - metadata_api.url={{ $root.Values.platform.metadataApiUrl }}
    - serving.model_name={{ $root.Values.platform.modelName }}
    - serving.http_port={{ $m.httpPort }}
    - serving.provenance_log=/tmp/provenance.jsonl
    {{- range $m.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  resources:
    {{- toYaml $m.resources | nindent 4 }}
  securityContext:
    {{- include "movierec.containerSecurityContext" $root | nindent 4 }}
{{- end -}}
