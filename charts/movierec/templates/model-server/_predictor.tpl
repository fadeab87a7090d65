{{/* A KServe PredictorSpec for (dict "root" $ "target" (dict "alias" .. "storageUri" ..)). */}}
{{- define "movierec.predictor" -}}
{{- $root := .root -}}
{{- $m := $root.Values.modelServer -}}
{{- $c := dict "root" $root "component" "model-server" -}}
{{- if .canary }}
# a canary predictor is named (its Deployment/Service: <isvc>-<name>-predictor) and has fixed
# replicas: KServe v0.20 refuses maxReplicas/scaleMetric/scaleTarget on it
name: {{ .canary }}
minReplicas: 1
{{- else }}
minReplicas: {{ $m.minReplicas }}
maxReplicas: {{ $m.maxReplicas }}
scaleMetric: {{ $m.scaleMetric }}
scaleTarget: {{ $m.scaleTarget }}
{{- end }}
serviceAccountName: {{ include "movierec.componentName" $c }}
automountServiceAccountToken: false
timeout: {{ $m.timeoutSeconds }}
{{- if ne $m.deploymentMode "Knative" }}
annotations:
  {{- include "movierec.scrapeAnnotations" (dict "port" $m.httpPort) | nindent 2 }}
{{- end }}
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
  {{- if .canary }}
  # the v0.20 CRD requires a container name on a canary's model...
  name: kserve-container
  {{- end }}
  # ...and its webhook refuses one on the stable predictor's model
  modelFormat:
    name: {{ $m.modelFormat }}
  runtime: {{ include "movierec.componentName" (dict "root" $root "component" "runtime") }}
  storageUri: {{ .target.storageUri }}
  args:
    {{- if eq $m.storageLayout "registry" }}
    {{- include "movierec.platformArgsWith" (dict "root" $root "registryRoot" (include "movierec.servedRegistryRoot" $root) "kafka" true) | nindent 4 }}
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
