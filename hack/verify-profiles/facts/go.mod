// The facts that hack/verify-profiles extracts from Cilium's Go code. A
// module of its own without dependencies, so that both the extractor (built
// against one Cilium release) and the driver (built against egwct) can use
// it without pulling either's dependencies into the other.
module github.com/egwct/egwct/hack/verify-profiles/facts

go 1.21
