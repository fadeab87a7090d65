{{/* Names ------------------------------------------------------------------------- */}}
{{- define "movierec.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "movierec.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "<fullname>-<component>": call with (dict "root" $ "component" "router") */}}
{{- define "movierec.componentName" -}}
{{- printf "%s-%s" (include "movierec.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "movierec.version" -}}
{{- default .Chart.AppVersion .Values.image.tag -}}
{{- end -}}

{{/* Labels: (dict "root" $ "component" "router") ---------------------------------------- */}}
{{- define "movierec.selectorLabels" -}}
app.kubernetes.io/name: {{ include "movierec.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "movierec.labels" -}}
{{ include "movierec.selectorLabels" . }}
app.kubernetes.io/version: {{ include "movierec.version" .root | quote }}
app.kubernetes.io/part-of: movierec
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Images: (dict "root" $ "component" "ingestor") -------------------------------------- */}}
{{- define "movierec.image" -}}
{{- $tag := include "movierec.version" .root -}}
{{- if eq $tag "latest" -}}{{- fail "image.tag must be a pinned version, not latest" -}}{{- end -}}
{{- printf "%s/%s-%s:%s" .root.Values.image.registry .root.Values.image.repository .component $tag -}}
{{- end -}}

{{- define "movierec.imagePullSecrets" -}}
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Security ------------------------------------------------------------------------ */}}
{{- define "movierec.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end -}}

{{- define "movierec.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext }}
{{- end -}}

{{/* Shared data volume ---------------------------------------------------------------- */}}
{{- define "movierec.dataClaim" -}}
{{- if .Values.platform.data.existingClaim -}}
{{- .Values.platform.data.existingClaim -}}
{{- else -}}
{{- include "movierec.componentName" (dict "root" . "component" "data") -}}
{{- end -}}
{{- end -}}

{{/* Hydra overrides shared by every entry point (one per line, YAML list items) -------- */}}
{{- define "movierec.platformArgs" -}}
{{- include "movierec.platformArgsWith" (dict "root" . "registryRoot" .Values.platform.data.registryRoot "kafka" true) -}}
{{- end -}}

{{/* For drift and trainer, whose configs have no kafka group */}}
{{- define "movierec.dataArgs" -}}
{{- include "movierec.platformArgsWith" (dict "root" . "registryRoot" .Values.platform.data.registryRoot "kafka" false) -}}
{{- end -}}

{{/* (dict "root" $ "registryRoot" "/mnt/models" "kafka" true): the model server sees the
     registry where KServe mounts it; only packages with a kafka config group get kafka.* */}}
{{- define "movierec.platformArgsWith" -}}
{{- $p := .root.Values.platform -}}
{{- if .kafka }}
- kafka.bootstrap={{ include "movierec.kafkaBootstrap" .root }}
- kafka.topic={{ $p.kafka.topic }}
{{- if ne $p.kafka.securityProtocol "PLAINTEXT" }}
- kafka.security_protocol={{ $p.kafka.securityProtocol }}
- kafka.sasl_mechanism={{ $p.kafka.saslMechanism }}
- kafka.sasl_username={{ $p.kafka.saslUsername }}
{{- end }}
{{- end }}
- data.lake_root={{ $p.data.lakeRoot }}
- data.registry_root={{ .registryRoot }}
- data.online_store_backend={{ $p.onlineStore.backend }}
- data.redis_url={{ include "movierec.redisUrl" .root }}
{{- with $p.onlineStore.redisUsername }}
- data.redis_username={{ . }}
{{- end }}
{{- range $p.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}

{{/* Services and URLs ------------------------------------------------------------------ */}}
{{- define "movierec.isvcName" -}}
{{- include "movierec.componentName" (dict "root" . "component" "model") -}}
{{- end -}}

{{/* The whole data claim, mounted read-only at /mnt/models: a sub-path mount of the registry
     directory would fail before the first training creates it (the kubelet then makes it
     root-owned 0750, which the pods' UID cannot read). */}}
{{- define "movierec.storageUri" -}}
{{- if .Values.modelServer.storageUri -}}
{{- .Values.modelServer.storageUri -}}
{{- else -}}
{{- printf "pvc://%s" (include "movierec.dataClaim" .) -}}
{{- end -}}
{{- end -}}

{{/* The registry as the model server sees it under the claim's mount at /mnt/models. */}}
{{- define "movierec.servedRegistryRoot" -}}
{{- if .Values.modelServer.storageUri -}}
/mnt/models
{{- else -}}
{{- printf "/mnt/models/%s" (trimPrefix .Values.platform.data.mountPath .Values.platform.data.registryRoot | trimPrefix "/") -}}
{{- end -}}
{{- end -}}

{{/* The primary predictor's in-cluster URL. Standard (raw) mode: KServe v0.20 makes one
     Service per predictor Deployment, `<isvc>-predictor` (port 80); the `<isvc>` host exists only
     behind Knative's or a gateway's routing. */}}
{{- define "movierec.modelUrl" -}}
{{- if .Values.router.modelUrl -}}
{{- .Values.router.modelUrl -}}
{{- else if eq .Values.modelServer.deploymentMode "Standard" -}}
{{- printf "http://%s-predictor.%s.svc.cluster.local" (include "movierec.isvcName" .) .Release.Namespace -}}
{{- else -}}
{{- printf "http://%s.%s.svc.cluster.local" (include "movierec.isvcName" .) .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/* Standard mode: a `spec.canary` entry named <name> runs as Deployment + Service
     `<isvc>-<name>-predictor` */}}
{{- define "movierec.canaryModelUrl" -}}
{{- printf "http://%s-%s-predictor.%s.svc.cluster.local" (include "movierec.isvcName" .) .Values.modelServer.canary.name .Release.Namespace -}}
{{- end -}}

{{- define "movierec.driftOnlineUrl" -}}
{{- if .Values.modelServer.logger.url -}}
{{- .Values.modelServer.logger.url -}}
{{- else -}}
{{- printf "http://%s.%s.svc.cluster.local:%d/" (include "movierec.componentName" (dict "root" . "component" "drift-online")) .Release.Namespace (int .Values.driftOnline.port) -}}
{{- end -}}
{{- end -}}

{{/* Variants actually deployed: all of them in an A/B test, else the first with 100% ---- */}}
{{- define "movierec.variants" -}}
{{- $variants := .Values.experiment.variants -}}
{{- if .Values.experiment.abTest -}}
{{- $total := 0 -}}
{{- range $variants }}{{ $total = add $total .weight }}{{ end -}}
{{- if ne (int $total) 100 -}}
{{- fail (printf "experiment.variants weights must sum to 100, got %d" (int $total)) -}}
{{- end -}}
{{- if lt (len $variants) 2 -}}
{{- fail "experiment.abTest needs at least two variants" -}}
{{- end -}}
{{- toYaml (dict "items" $variants) -}}
{{- else -}}
{{- $first := first $variants -}}
{{- toYaml (dict "items" (list (dict "name" $first.name "weight" 100 "args" ($first.args | default list) "modelUrl" ($first.modelUrl | default "")))) -}}
{{- end -}}
{{- end -}}

{{/* Common pod volumes: a writable /tmp (read-only root filesystem) ------------------- */}}
{{- define "movierec.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- end -}}

{{- define "movierec.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{- define "movierec.dataVolume" -}}
- name: data
  persistentVolumeClaim:
    claimName: {{ include "movierec.dataClaim" . }}
{{- end -}}

{{- define "movierec.dataMount" -}}
- name: data
  mountPath: {{ .Values.platform.data.mountPath }}
{{- end -}}

{{/* Environment shared by the Python containers ----------------------------------------- */}}
{{/* The admin token Secret's name (existing or created by the chart). */}}
{{- define "movierec.adminTokenSecret" -}}
{{- .Values.adminToken.existingSecret | default (printf "%s-admin-token" (include "movierec.fullname" .) | trunc 63 | trimSuffix "-") -}}
{{- end -}}

{{/* MOVIEREC_ADMIN_TOKEN from the admin token Secret (services with admin endpoints). */}}
{{- define "movierec.adminTokenEnv" -}}
- name: MOVIEREC_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "movierec.adminTokenSecret" . }}
      key: {{ .Values.adminToken.key }}
{{- end -}}

{{/* The pseudonym key ring's Secret (existing or created by the chart). */}}
{{- define "movierec.pseudonymSecret" -}}
{{- .Values.pseudonyms.existingSecret | default (printf "%s-pseudonym-keys" (include "movierec.fullname" .) | trunc 63 | trimSuffix "-") -}}
{{- end -}}

{{/* MOVIEREC_PSEUDONYM_KEYS from that Secret (the services that meet user ids: the ingestor
     pseudonymises what it stores, the model server the ids of requests). */}}
{{- define "movierec.pseudonymEnv" -}}
{{- if .Values.pseudonyms.enabled }}
- name: MOVIEREC_PSEUDONYM_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ include "movierec.pseudonymSecret" . }}
      key: {{ .Values.pseudonyms.key }}
{{- end }}
{{- end -}}

{{- define "movierec.pythonEnv" -}}
- name: HOME
  value: /tmp
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
- name: PYTHONUNBUFFERED
  value: "1"
{{- with .Values.platform.kafka.passwordSecret }}{{- if .name }}
- name: MOVIEREC_KAFKA_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .key }}
{{- end }}{{- end }}
{{- with .Values.platform.onlineStore.passwordSecret }}{{- if .name }}
- name: MOVIEREC_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .key }}
{{- end }}{{- end }}
{{- end -}}

{{/* Local single-node storage (localStorage.hostPathRoot set): each claim the chart creates binds
     a hostPath PersistentVolume the chart creates for it, statically (no provisioner). On one
     node every pod sees the same directory, so ReadWriteMany holds; on several nodes it does not.
     (dict "root" $ "volume" "data" "claim" <claim> "size" <size> "accessMode" <mode>) */}}
{{- define "movierec.localVolumeName" -}}
{{- printf "%s-%s-%s" .root.Release.Namespace (include "movierec.fullname" .root) .volume | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "movierec.localVolumeClaim" -}}
{{- if .root.Values.localStorage.hostPathRoot -}}
storageClassName: ""
volumeName: {{ include "movierec.localVolumeName" . }}
{{- else if .storageClassName -}}
storageClassName: {{ .storageClassName }}
{{- end -}}
{{- end -}}

{{- define "movierec.localVolume" -}}
{{- if .root.Values.localStorage.hostPathRoot }}
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: {{ include "movierec.localVolumeName" . }}
  labels:
    {{- include "movierec.labels" (dict "root" .root "component" .volume) | nindent 4 }}
  annotations:
    helm.sh/resource-policy: keep
spec:
  capacity:
    storage: {{ .size }}
  accessModes: [{{ .accessMode }}]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  claimRef:
    namespace: {{ .root.Release.Namespace }}
    name: {{ .claim }}
  hostPath:
    # created beforehand, owned by the pods' UID (hostPath volumes ignore fsGroup)
    path: {{ printf "%s/%s/%s" (trimSuffix "/" .root.Values.localStorage.hostPathRoot) .root.Release.Namespace .volume }}
    type: Directory
{{- end }}
{{- end -}}

{{/* Kafka bootstrap and Redis URL: the in-chart services when enabled, else platform.* */}}
{{- define "movierec.kafkaBootstrap" -}}
{{- if .Values.kafka.enabled -}}
{{- printf "%s.%s.svc:9092" (include "movierec.componentName" (dict "root" . "component" "kafka")) .Release.Namespace -}}
{{- else -}}
{{- .Values.platform.kafka.bootstrap -}}
{{- end -}}
{{- end -}}

{{- define "movierec.redisUrl" -}}
{{- if .Values.redis.enabled -}}
{{- printf "redis://%s.%s.svc:6379/0" (include "movierec.componentName" (dict "root" . "component" "redis")) .Release.Namespace -}}
{{- else -}}
{{- .Values.platform.onlineStore.redisUrl -}}
{{- end -}}
{{- end -}}

{{/* Pod annotations for the in-chart Prometheus (kubernetes_sd, role pod): (dict "port" 9101) */}}
{{- define "movierec.scrapeAnnotations" -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end -}}

{{/* Pushgateway host:port for batch steps' metrics: the in-chart one when enabled, else
     pushgateway.address (empty: steps push nothing) */}}
{{- define "movierec.pushgateway" -}}
{{- if .Values.pushgateway.enabled -}}
{{- printf "%s.%s.svc:9091" (include "movierec.componentName" (dict "root" . "component" "pushgateway")) .Release.Namespace -}}
{{- else -}}
{{- .Values.pushgateway.address -}}
{{- end -}}
{{- end -}}

{{/* Without a mesh in Standard mode the router splits, and knows the KServe canary predictor
     as a variant (weight 0 until a canary moves traffic to it): when a canary is rendered or
     the pipeline's canary step may add one. */}}
{{- define "movierec.routerHasCanary" -}}
{{- if and (not .Values.router.istio.enabled) (eq .Values.modelServer.deploymentMode "Standard") (or .Values.modelServer.canary.enabled .Values.pipeline.enabled) -}}
true
{{- end -}}
{{- end -}}
