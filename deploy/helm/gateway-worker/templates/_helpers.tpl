{{- define "gw.name" -}}{{ .Chart.Name }}{{- end -}}
{{- define "gw.fullname" -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- define "gw.image" -}}{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}{{- end -}}
{{- define "gw.secretName" -}}{{ .Values.secrets.existingSecret | default (printf "%s-secrets" (include "gw.fullname" .)) }}{{- end -}}

{{- define "gw.labels" -}}
app.kubernetes.io/name: {{ include "gw.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "gw.selector" -}}
app.kubernetes.io/name: {{ include "gw.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{/* Environment shared by every role: the ConfigMap and the Secret. */}}
{{- define "gw.envFrom" -}}
envFrom:
  - configMapRef:
      name: {{ include "gw.fullname" . }}-config
  - secretRef:
      name: {{ include "gw.secretName" . }}
{{- end -}}

{{- define "gw.podCommon" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  - name: var
    emptyDir: {}
{{- if .Values.grpc.tlsSecret }}
  - name: grpc-tls
    secret:
      secretName: {{ .Values.grpc.tlsSecret }}
{{- end }}
{{- end -}}

{{- define "gw.containerCommon" -}}
image: {{ include "gw.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
{{ include "gw.envFrom" . }}
volumeMounts:
  - name: var
    mountPath: /var/lib/gateway-worker
{{- if .Values.grpc.tlsSecret }}
  - name: grpc-tls
    mountPath: /etc/gateway-worker/grpc
    readOnly: true
{{- end }}
{{- end -}}


{{/* Every long-running role starts only once the schema matches its code (the migrate Job applies it). */}}
{{- define "gw.waitForMigrations" -}}
initContainers:
  - name: wait-for-migrations
    {{- include "gw.containerCommon" . | nindent 4 }}
    command: ["sh", "-c", "until python manage.py migrate --check >/dev/null 2>&1; do echo waiting for migrations; sleep 5; done"]
{{- end -}}
