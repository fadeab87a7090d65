{{/* One Argo container template: (dict "root" $ "name" .. "component" <image> "command" (list ..)
     "args" (list ..) "outputs" (list <parameter names>) "resources" .. "serviceAccount" ..) */}}
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
  {{- with .outputs }}
  outputs:
    parameters:
      {{- range . }}
      - name: {{ . }}
        valueFrom:
          path: /tmp/outputs/{{ . }}
      {{- end }}
  {{- end }}
  container:
    image: {{ include "movierec.image" (dict "root" $root "component" .component) }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    command:
      {{- toYaml .command | nindent 6 }}
    args:
      {{- include "movierec.platformArgs" $root | nindent 6 }}
      # the step writes its outputs (one file per Argo output parameter) here
      - ++pipeline.output_dir=/tmp/outputs
      {{- range .args }}
      - {{ . | quote }}
      {{- end }}
    env:
      {{- include "movierec.pythonEnv" $root | nindent 6 }}
    resources:
      {{- toYaml .resources | nindent 6 }}
    securityContext:
      {{- include "movierec.containerSecurityContext" $root | nindent 6 }}
    volumeMounts:
      {{- include "movierec.tmpMount" $root | nindent 6 }}
      {{- include "movierec.dataMount" $root | nindent 6 }}
{{- end -}}
