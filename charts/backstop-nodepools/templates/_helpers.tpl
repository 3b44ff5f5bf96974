{{/* The cluster name, required. */}}
{{- define "nodepools.cluster" -}}
{{- required "clusterName is required: --set clusterName=<your EKS cluster's name>" .Values.clusterName -}}
{{- end }}

{{/* Common labels. */}}
{{- define "nodepools.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* One NodePool: dict "root" $ "pool" .Values.spot "capacityType" "spot". */}}
{{- define "nodepools.pool" -}}
{{- $v := .root.Values -}}
{{- $r := $v.requirements -}}
apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: {{ .pool.name }}
  labels:
    {{- include "nodepools.labels" .root | nindent 4 }}
spec:
  weight: {{ .pool.weight }}
  template:
    {{- with $v.labels }}
    metadata:
      labels:
        {{- toYaml . | nindent 8 }}
    {{- end }}
    spec:
      nodeClassRef:
        group: karpenter.k8s.aws
        kind: EC2NodeClass
        name: {{ $v.nodeClass.name }}
      expireAfter: {{ $v.expireAfter | quote }}
      {{- with $v.taints }}
      taints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      requirements:
      - key: karpenter.sh/capacity-type
        operator: In
        values: [{{ .capacityType }}]
      {{- with $r.instanceCategories }}
      - key: karpenter.k8s.aws/instance-category
        operator: In
        values: {{ toJson . }}
      {{- end }}
      {{- with $r.instanceFamilies }}
      - key: karpenter.k8s.aws/instance-family
        operator: In
        values: {{ toJson . }}
      {{- end }}
      {{- with $r.instanceTypes }}
      - key: node.kubernetes.io/instance-type
        operator: In
        values: {{ toJson . }}
      {{- end }}
      {{- if gt (int $r.minGeneration) 0 }}
      - key: karpenter.k8s.aws/instance-generation
        operator: Gt
        values: [{{ sub (int $r.minGeneration) 1 | quote }}]
      {{- end }}
      {{- with $r.arch }}
      - key: kubernetes.io/arch
        operator: In
        values: {{ toJson . }}
      {{- end }}
      {{- with $r.zones }}
      - key: topology.kubernetes.io/zone
        operator: In
        values: {{ toJson . }}
      {{- end }}
      {{- with $r.extra }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
  disruption:
    {{- toYaml (.pool.disruption | default $v.disruption) | nindent 4 }}
  {{- with .pool.limits }}
  limits:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
