module github.com/egwct/egwct/hack/verify-profiles

go 1.26.8

require (
	github.com/egwct/egwct v0.0.0
	github.com/egwct/egwct/hack/verify-profiles/facts v0.0.0
)

require (
	github.com/cilium/ebpf v0.22.0 // indirect
	go.yaml.in/yaml/v3 v3.0.6 // indirect
	golang.org/x/mod v0.43.0
	golang.org/x/sys v0.50.0 // indirect
)

replace (
	github.com/egwct/egwct => ../..
	github.com/egwct/egwct/hack/verify-profiles/facts => ./facts
)
