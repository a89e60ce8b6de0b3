{{/* Name of every object: the release name, with the chart's appended unless it already holds it. */}}
{{- define "kubestream.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kubestream.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kubestream.labels" -}}
{{ include "kubestream.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kubestream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "kubestream.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/*
Resources of the core group that may be named without a group. Any other
name without a dot is refused: the chart cannot ask discovery which group
"deployments" belongs to, and a rule for the wrong group grants nothing.
*/}}
{{- define "kubestream.coreResources" -}}
pods nodes configmaps services endpoints namespaces events persistentvolumes persistentvolumeclaims serviceaccounts secrets replicationcontrollers resourcequotas limitranges podtemplates
{{- end -}}

{{/*
ClusterRole rules from .Values.kinds: "resource" (core group) or
"resource.group", one rule per group with get, list and watch.
*/}}
{{- define "kubestream.kindRules" -}}
{{- $core := splitList " " (include "kubestream.coreResources" .) -}}
{{- $groups := dict -}}
{{- range $kind := .Values.kinds -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$" $kind) -}}
{{- fail (printf "kinds: %q is not a kubectl resource name: write resource or resource.group in lower case, e.g. pods or deployments.apps" $kind) -}}
{{- end -}}
{{- $parts := splitn "." 2 $kind -}}
{{- $resource := $parts._0 -}}
{{- $group := $parts._1 | default "" -}}
{{- if and (eq $group "") (not (has $resource $core)) -}}
{{- fail (printf "kinds: %q has no API group and is not a core resource: write it as resource.group, e.g. deployments.apps (kubectl api-resources lists the groups)" $kind) -}}
{{- end -}}
{{- $key := printf "g/%s" $group -}}
{{- $_ := set $groups $key (append (get $groups $key | default list) $resource | uniq) -}}
{{- end -}}
{{- range $key := keys $groups | sortAlpha }}
- apiGroups: [{{ trimPrefix "g/" $key | quote }}]
  resources: {{ get $groups $key | sortAlpha | toJson }}
  verbs: ["get", "list", "watch"]
{{- end -}}
{{- end -}}

{{/* GOMEMLIMIT in MiB: goMemLimitRatio of resources.limits.memory (Ki, Mi, Gi, Ti, k, M, G, T or bytes). */}}
{{- define "kubestream.goMemLimit" -}}
{{- $limit := toString (dig "limits" "memory" "" .Values.resources) -}}
{{- if and $limit (gt (float64 .Values.goMemLimitRatio) 0.0) -}}
{{- $m := regexFind "^[0-9]+(\\.[0-9]+)?" $limit -}}
{{- if not $m -}}
{{- fail (printf "resources.limits.memory %q is not a quantity: write e.g. 512Mi or 1Gi" $limit) -}}
{{- end -}}
{{- $unit := trimPrefix $m $limit -}}
{{- $factors := dict "" 1.0 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "k" 1000.0 "M" 1000000.0 "G" 1000000000.0 "T" 1000000000000.0 -}}
{{- if not (hasKey $factors $unit) -}}
{{- fail (printf "resources.limits.memory %q: unit %q is not one of Ki, Mi, Gi, Ti, k, M, G, T" $limit $unit) -}}
{{- end -}}
{{- $bytes := mulf (float64 $m) (get $factors $unit) -}}
{{- printf "%dMiB" (int (floor (divf (mulf $bytes (float64 .Values.goMemLimitRatio)) 1048576.0))) -}}
{{- end -}}
{{- end -}}

{{/* A Secret volume's items: only the keys asked for. */}}
{{- define "kubestream.secretItems" -}}
{{- range $k := . }}{{ if $k }}
- key: {{ $k | quote }}
  path: {{ $k | quote }}
{{- end }}{{ end -}}
{{- end -}}

{{/* Values that would make a broken or unsafe release, refused with what to change. */}}
{{- define "kubestream.validate" -}}
{{- $sink := .Values.sink.type -}}
{{- if not (has $sink (list "kafka" "nats" "stdout")) -}}
{{- fail (printf "sink.type %q is unknown: use kafka, nats or stdout" $sink) -}}
{{- end -}}
{{- if and (eq $sink "kafka") (not .Values.sink.kafka.brokers) -}}
{{- fail "sink.type kafka needs sink.kafka.brokers, e.g. --set 'sink.kafka.brokers={kafka:9092}'" -}}
{{- end -}}
{{- if and (eq $sink "nats") (not .Values.sink.nats.urls) -}}
{{- fail "sink.type nats needs sink.nats.urls, e.g. --set 'sink.nats.urls={nats://nats:4222}' (the embedded server is for local runs only)" -}}
{{- end -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection.enabled) -}}
{{- fail (printf "replicas %d without leaderElection.enabled would publish every event %d times: enable leader election or set replicas to 1" (int .Values.replicas) (int .Values.replicas)) -}}
{{- end -}}
{{- if not .Values.kinds -}}
{{- fail "kinds is empty: list the kinds to stream, e.g. [pods, deployments.apps]" -}}
{{- end -}}
{{- with .Values.sink.kafka.tls -}}
{{- if and $.Values.sink.kafka.tls.enabled (or .certKey .keyKey) (not .secretName) -}}
{{- fail "sink.kafka.tls.certKey/keyKey need sink.kafka.tls.secretName, the Secret holding them" -}}
{{- end -}}
{{- if ne (empty .certKey) (empty .keyKey) -}}
{{- fail "sink.kafka.tls.certKey and keyKey go together: give both for mutual TLS, or neither" -}}
{{- end -}}
{{- end -}}
{{- with .Values.sink.nats.tls -}}
{{- if ne (empty .certKey) (empty .keyKey) -}}
{{- fail "sink.nats.tls.certKey and keyKey go together: give both for mutual TLS, or neither" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.sink.kafka.sasl.mechanism (not .Values.sink.kafka.sasl.passwordSecret.name) (eq $sink "kafka") -}}
{{- fail "sink.kafka.sasl.mechanism needs sink.kafka.sasl.passwordSecret.name, the Secret holding the password" -}}
{{- end -}}
{{- $auth := .Values.sink.nats.auth -}}
{{- if gt (len (compact (list $auth.credsSecret.name $auth.tokenSecret.name (or $auth.user $auth.passwordSecret.name)))) 1 -}}
{{- fail "sink.nats.auth: give one of credsSecret, tokenSecret or user with passwordSecret" -}}
{{- end -}}
{{- if ne (empty $auth.user) (empty $auth.passwordSecret.name) -}}
{{- fail "sink.nats.auth.user and passwordSecret go together" -}}
{{- end -}}
{{- end -}}

{{/* Where secrets are mounted. */}}
{{- define "kubestream.kafkaTLSDir" -}}/var/run/secrets/kubestream/kafka-tls{{- end -}}
{{- define "kubestream.kafkaSASLDir" -}}/var/run/secrets/kubestream/kafka-sasl{{- end -}}
{{- define "kubestream.natsTLSDir" -}}/var/run/secrets/kubestream/nats-tls{{- end -}}
{{- define "kubestream.natsAuthDir" -}}/var/run/secrets/kubestream/nats-auth{{- end -}}

{{/* The arguments of `kubestream run`, one per line, unquoted: the Deployment quotes each. */}}
{{- define "kubestream.args" -}}
run
--cluster-name={{ .Values.clusterName }}
--kinds={{ join "," .Values.kinds }}
{{- with .Values.watchNamespace }}
--namespace={{ . }}
{{- end }}
{{- with .Values.selector }}
--selector={{ . }}
{{- end }}
--resync={{ .Values.resync }}
--content-type={{ .Values.contentType }}
--listen-address=:{{ .Values.port }}
--resume={{ .Values.resume.enabled }}
--snapshot-on-start={{ .Values.resume.snapshotOnStart }}
{{- if .Values.leaderElection.enabled }}
--leader-elect
--leader-elect-resource-name={{ .Values.leaderElection.leaseName }}
--leader-elect-lease-duration={{ .Values.leaderElection.leaseDuration }}
--leader-elect-renew-deadline={{ .Values.leaderElection.renewDeadline }}
--leader-elect-retry-period={{ .Values.leaderElection.retryPeriod }}
{{- end }}
--sink={{ .Values.sink.type }}
{{- if eq .Values.sink.type "kafka" }}
{{- with .Values.sink.kafka }}
--kafka-brokers={{ join "," .brokers }}
--kafka-topic-prefix={{ .topicPrefix }}
{{- if .createTopics }}
--kafka-create-topics
{{- end }}
{{- if .tls.enabled }}
--kafka-tls
{{- if .tls.secretName }}
{{- if .tls.caKey }}
--kafka-tls-ca-file={{ include "kubestream.kafkaTLSDir" $ }}/{{ .tls.caKey }}
{{- end }}
{{- if .tls.certKey }}
--kafka-tls-cert-file={{ include "kubestream.kafkaTLSDir" $ }}/{{ .tls.certKey }}
--kafka-tls-key-file={{ include "kubestream.kafkaTLSDir" $ }}/{{ .tls.keyKey }}
{{- end }}
{{- end }}
{{- with .tls.serverName }}
--kafka-tls-server-name={{ . }}
{{- end }}
{{- if .tls.insecureSkipVerify }}
--kafka-tls-insecure-skip-verify
{{- end }}
{{- end }}
{{- if .sasl.mechanism }}
--kafka-sasl-mechanism={{ .sasl.mechanism }}
--kafka-sasl-username={{ .sasl.username }}
--kafka-sasl-password-file={{ include "kubestream.kafkaSASLDir" $ }}/{{ .sasl.passwordSecret.key }}
{{- end }}
{{- end }}
{{- end }}
{{- if eq .Values.sink.type "nats" }}
{{- with .Values.sink.nats }}
--nats-url={{ join "," .urls }}
--nats-stream={{ .stream }}
{{- if .streamCreate }}
--nats-stream-create
{{- end }}
--nats-subject-prefix={{ .subjectPrefix }}
{{- if and .tls.enabled .tls.secretName }}
{{- if .tls.caKey }}
--nats-tls-ca-file={{ include "kubestream.natsTLSDir" $ }}/{{ .tls.caKey }}
{{- end }}
{{- if .tls.certKey }}
--nats-tls-cert-file={{ include "kubestream.natsTLSDir" $ }}/{{ .tls.certKey }}
--nats-tls-key-file={{ include "kubestream.natsTLSDir" $ }}/{{ .tls.keyKey }}
{{- end }}
{{- end }}
{{- with .auth }}
{{- if .credsSecret.name }}
--nats-creds-file={{ include "kubestream.natsAuthDir" $ }}/{{ .credsSecret.key }}
{{- end }}
{{- if .tokenSecret.name }}
--nats-token-file={{ include "kubestream.natsAuthDir" $ }}/{{ .tokenSecret.key }}
{{- end }}
{{- if .user }}
--nats-user={{ .user }}
--nats-password-file={{ include "kubestream.natsAuthDir" $ }}/{{ .passwordSecret.key }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- range .Values.extraArgs }}
{{ . }}
{{- end }}
{{- end -}}
