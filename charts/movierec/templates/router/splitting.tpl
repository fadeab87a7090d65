{{/* Without a mesh (router.istio.enabled: false) the router itself splits the traffic: one
     Deployment, every replica serving every variant, users assigned by a sticky hash of the
     user id under the weights of one ConfigMap that all replicas poll (the canary patches it).
     Variants: the experiment's (modelUrl default: the primary predictor) and, with
     modelServer.canary.enabled, the KServe canary predictor with its trafficPercent. */}}
{{- define "movierec.routerVariants" -}}
{{- $items := list -}}
{{- $m := .Values.modelServer -}}
{{- $canaryPct := ternary (int $m.canary.trafficPercent) 0 $m.canary.enabled -}}
{{- range (include "movierec.variants" . | fromYaml).items -}}
{{- $w := int .weight -}}
{{- if and $m.canary.enabled (eq .name (first $.Values.experiment.variants).name) -}}
{{- $w = sub $w (int (div (mul $w $canaryPct) 100)) -}}
{{- end -}}
{{- $items = append $items (dict "name" .name "weight" $w "url" (.modelUrl | default (include "movierec.modelUrl" $))) -}}
{{- end -}}
{{- if include "movierec.routerHasCanary" . -}}
{{- $first := int (first (include "movierec.variants" . | fromYaml).items).weight -}}
{{- $items = append $items (dict "name" $m.canary.name "weight" (div (mul $first $canaryPct) 100) "url" (include "movierec.canaryModelUrl" .)) -}}
{{- end -}}
{{- toYaml (dict "items" $items) -}}
{{- end -}}

{{- define "movierec.routerWeightsName" -}}
{{- include "movierec.componentName" (dict "root" . "component" "router-weights") -}}
{{- end -}}

{{- define "movierec.routerSplitting" -}}
{{- $c := dict "root" . "component" "router" -}}
{{- $variants := (include "movierec.routerVariants" . | fromYaml).items -}}
{{- $hydra := list -}}
{{- $weights := dict -}}
{{- range $variants -}}
{{- $hydra = append $hydra (printf "{name:%s,weight:%d,urls:[%s]}" .name (int .weight) .url) -}}
{{- $_ := set $weights .name (int .weight) -}}
{{- end }}
---
# The router's traffic split (all replicas poll it; `kubectl -n {{ .Release.Namespace }} get cm
# {{ include "movierec.routerWeightsName" . }} -o yaml` shows the weights in force).
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "movierec.routerWeightsName" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "movierec.labels" $c | nindent 4 }}
data:
  weights.json: {{ dict "weights" $weights "source" "helm" | toJson | quote }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ include "movierec.componentName" $c }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "movierec.labels" $c | nindent 4 }}
rules:
  - apiGroups: [""]
    resources: [configmaps]
    resourceNames: [{{ include "movierec.routerWeightsName" . }}]
    verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ include "movierec.componentName" $c }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "movierec.labels" $c | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ include "movierec.componentName" $c }}
subjects:
  - kind: ServiceAccount
    name: {{ include "movierec.componentName" $c }}
    namespace: {{ .Release.Namespace }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "movierec.componentName" $c }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "movierec.labels" $c | nindent 4 }}
spec:
  replicas: {{ .Values.router.replicas }}
  revisionHistoryLimit: 3
  selector:
    matchLabels:
      {{- include "movierec.selectorLabels" $c | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "movierec.labels" $c | nindent 8 }}
        movierec.io/experiment: {{ .Values.experiment.name }}
      annotations:
        {{- include "movierec.scrapeAnnotations" (dict "port" .Values.router.port) | nindent 8 }}
    spec:
      serviceAccountName: {{ include "movierec.componentName" $c }}
      # the token reads the weights ConfigMap (one resourceName, get only)
      automountServiceAccountToken: true
      securityContext:
        {{- include "movierec.podSecurityContext" . | nindent 8 }}
      {{- include "movierec.imagePullSecrets" . | nindent 6 }}
      containers:
        - name: router
          image: {{ include "movierec.image" (dict "root" . "component" "experiments") }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          command: [python, -m, experiments, router]
          args:
            {{- include "movierec.platformArgs" . | nindent 12 }}
            - serving.http_port={{ .Values.router.port }}
            - experiments.host=0.0.0.0
            - experiments.name={{ .Values.experiment.name }}
            - experiments.variants=[{{ join "," $hydra }}]
            - experiments.weights_configmap={{ include "movierec.routerWeightsName" . }}
            - experiments.state_dir=/tmp/experiments
            - experiments.report_dir=/tmp/experiments/reports
            {{- range .Values.router.extraArgs }}
            - {{ . | quote }}
            {{- end }}
          env:
            {{- include "movierec.pythonEnv" . | nindent 12 }}
            {{- include "movierec.adminTokenEnv" . | nindent 12 }}
            {{- include "movierec.pseudonymEnv" . | nindent 12 }}
          ports:
            - name: http
              containerPort: {{ .Values.router.port }}
              protocol: TCP
          startupProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 3
            failureThreshold: 40
          livenessProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 15
            timeoutSeconds: 3
          readinessProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 5
            timeoutSeconds: 2
          resources:
            {{- toYaml .Values.router.resources | nindent 12 }}
          securityContext:
            {{- include "movierec.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            {{- include "movierec.tmpMount" . | nindent 12 }}
      volumes:
        {{- include "movierec.tmpVolume" . | nindent 8 }}
{{- end -}}
