{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "kubetune.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's resources. */}}
{{- define "kubetune.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kubetune.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "kubetune.labels" -}}
helm.sh/chart: {{ include "kubetune.chart" . }}
{{ include "kubetune.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubetune
{{- end }}

{{/* Labels the Deployment and the Service select the operator pods by. */}}
{{- define "kubetune.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubetune.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "kubetune.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kubetune.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kubetune.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* "true" when the operator watches every namespace (--all-namespaces). */}}
{{- define "kubetune.allNamespaces" -}}
{{- if and (eq .Values.rbac.mode "cluster") (empty .Values.watchNamespaces) }}true{{ end }}
{{- end }}

{{/* The watched namespaces as a JSON list (namespaced watching only). */}}
{{- define "kubetune.watchNamespaces" -}}
{{- if .Values.watchNamespaces }}
{{- .Values.watchNamespaces | uniq | toJson }}
{{- else }}
{{- list .Release.Namespace | toJson }}
{{- end }}
{{- end }}

{{/* "true" when kopf peering is on: forced, or more than one replica. */}}
{{- define "kubetune.peering" -}}
{{- if or .Values.peering.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{- define "kubetune.peeringName" -}}
{{- default (include "kubetune.fullname" .) .Values.peering.name }}
{{- end }}

{{/*
RBAC rules on namespaced resources: what the operator reads and writes in a watched namespace.
Exactly the verbs the code uses (tests/helm/test_rbac_usage.py compares them with the KubeApi
calls in operator/backends/k8s/): Studies are listed, watched and patched by kopf (finalizer,
progress), read again after a status write met a conflict, and their status is patched; Trials are created, read, listed, patched and deleted;
Jobs are created, read, listed, watched and deleted (never patched); pods are listed and watched
(phases, preemption, failure messages come from the pod status, not logs); a change to a Study's
Job or Pod wakes its pass at once (kopf watches them); core/v1 events are created. Peering rules
are added where the namespaced peering is used.
*/}}
{{- define "kubetune.namespacedRules" -}}
- apiGroups: ["kubetune.io"]
  resources: ["studies"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["kubetune.io"]
  resources: ["studies/status"]
  verbs: ["patch"]
- apiGroups: ["kubetune.io"]
  resources: ["trials"]
  verbs: ["get", "list", "create", "patch", "delete"]
- apiGroups: ["kubetune.io"]
  resources: ["trials/status"]
  verbs: ["patch"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- if .Values.dashboard.enabled }}
{{- /* the dashboard reads a Study's Events and its trials' pod logs */}}
- apiGroups: [""]
  resources: ["events"]
  verbs: ["list"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
{{- end }}
{{- include "kubetune.workloadRules" . }}
{{- end }}

{{/* Trial workload kinds beyond Job (docs/workloads.md): rights only for kinds a
`workloads.*` flag enables. The executor creates, lists, reads and deletes them. */}}
{{- define "kubetune.workloadRules" -}}
{{- $w := .Values.workloads | default dict }}
{{- range $flag, $res := dict "jobset" (list "jobset.x-k8s.io" "jobsets") "trainjob" (list "trainer.kubeflow.org" "trainjobs") "pytorchjob" (list "kubeflow.org" "pytorchjobs") }}
{{- if index $w $flag }}
- apiGroups: [{{ index $res 0 | quote }}]
  resources: [{{ index $res 1 | quote }}]
  verbs: ["get", "list", "create", "delete"]
{{- end }}
{{- end }}
{{- end }}

{{/* kopf's cluster-scoped backbone: it lists and watches namespaces and CRDs. */}}
{{- define "kubetune.clusterReadRules" -}}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- end }}

{{- define "kubetune.peeringRule" -}}
- apiGroups: ["kopf.dev"]
  resources: [{{ . | quote }}]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}

{{/*
Tenant namespaces for storage credentials, as a JSON object {namespace: overrides}: the entries
of checkpoint.namespaces, plus every watched namespace when the operator watches a list (those
get no overrides). The operator may read storage Secrets only in these namespaces.
*/}}
{{- define "kubetune.storageNamespaces" -}}
{{- $out := dict }}
{{- if not (include "kubetune.allNamespaces" .) }}
{{- range $ns := (include "kubetune.watchNamespaces" . | fromJsonArray) }}
{{- $_ := set $out $ns (dict) }}
{{- end }}
{{- end }}
{{- range $ns, $rules := .Values.checkpoint.namespaces }}
{{- $_ := set $out $ns ($rules | default (dict)) }}
{{- end }}
{{- $out | toJson }}
{{- end }}

{{/* The operator's --storage-access argument: the checkpoint.* credential rules as JSON. */}}
{{- define "kubetune.storageAccess" -}}
{{- $c := .Values.checkpoint }}
{{- dict "secretName" $c.secretName "secretNames" $c.secretNames "allowedPrefixes" $c.allowedPrefixes "namespaces" (include "kubetune.storageNamespaces" . | fromJson) "listedNamespacesOnly" true | toJson }}
{{- end }}

{{/*
The storage Secret names the operator may read in one namespace (its Role's resourceNames):
the namespace's secretName and secretNames, each defaulting to the global one. Called with
(list $ $namespace $overrides); renders a JSON list.
*/}}
{{- define "kubetune.storageSecretNames" -}}
{{- $root := index . 0 }}
{{- $rules := index . 2 | default (dict) }}
{{- $name := ternary (get $rules "secretName") $root.Values.checkpoint.secretName (hasKey $rules "secretName") }}
{{- $more := ternary (get $rules "secretNames") $root.Values.checkpoint.secretNames (hasKey $rules "secretNames") }}
{{- $names := list }}
{{- if $name }}{{ $names = append $names $name }}{{ end }}
{{- range $more }}{{ $names = append $names . }}{{ end }}
{{- $names | uniq | toJson }}
{{- end }}
