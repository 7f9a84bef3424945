{{- /*
The cluster's current StorageClass NAME as YAML ("{}" when absent, and always under `helm
template`, where lookup sees no cluster). Its own file so the chart tests can stand in a fixture
for the cluster (tests/chart/run.sh immutable).
*/ -}}
{{- define "strata.lookupStorageClass" -}}
{{- lookup "storage.k8s.io/v1" "StorageClass" "" . | toYaml -}}
{{- end -}}
