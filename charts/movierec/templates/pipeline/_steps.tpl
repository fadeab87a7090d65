{{/* One Argo container step:
     (dict "root" $ "name" .. "component" <image> "command" (list ..) "args" (list ..)
           "platformArgs" true "inputs" (list ..) "env" (list (dict "name" .. "value" ..))
           "resources" .. "serviceAccount" .. "scripts" true "pseudonyms" true) */}}
{{- define "movierec.argoStep" -}}
{{- $root := .root -}}
- name: {{ .name }}
  {{- with .inputs }}
  inputs:
    parameters:
      {{- range . }}
      - name: {{ . }}
      {{- end }}
  {{- end }}
  {{- with .serviceAccount }}
  serviceAccountName: {{ . }}
  automountServiceAccountToken: true
  {{- end }}
  container:
    image: {{ include "movierec.image" (dict "root" $root "component" .component) }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    # a failed step's last log lines become its message (the Argo UI shows why it failed)
    terminationMessagePolicy: FallbackToLogsOnError
    command:
      {{- toYaml .command | nindent 6 }}
    {{- if or .platformArgs .args }}
    args:
      {{- if eq (toString .platformArgs) "data" }}
      {{- include "movierec.dataArgs" $root | nindent 6 }}
      {{- else if .platformArgs }}
      {{- include "movierec.platformArgs" $root | nindent 6 }}
      {{- end }}
      {{- range .args }}
      - {{ . | quote }}
      {{- end }}
    {{- end }}
    env:
      {{- include "movierec.pythonEnv" $root | nindent 6 }}
      {{- if .pseudonyms }}
      {{- include "movierec.pseudonymEnv" $root | nindent 6 }}
      {{- end }}
      {{- range .env }}
      - name: {{ .name }}
        value: {{ .value | quote }}
      {{- end }}
    resources:
      {{- toYaml .resources | nindent 6 }}
    securityContext:
      {{- include "movierec.containerSecurityContext" $root | nindent 6 }}
    volumeMounts:
      {{- include "movierec.tmpMount" $root | nindent 6 }}
      {{- include "movierec.dataMount" $root | nindent 6 }}
      {{- if .scripts }}
      - name: pipeline-scripts
        mountPath: /opt/movierec/pipeline
        readOnly: true
      {{- end }}
{{- end -}}
