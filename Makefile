# egwct — run `make` or `make help` for the targets.

GO       ?= go
BIN      ?= bin/egwct
FUZZTIME ?= 15s
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null)
# The commit's date, not the clock's: the same commit builds the same bytes
# (SOURCE_DATE_EPOCH, when set, wins: reproducible-builds.org's convention).
DATE     ?= $(shell if [ -n "$$SOURCE_DATE_EPOCH" ]; then \
	date -u -d "@$$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u -r "$$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ; \
	else TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null; fi)
CLI      := github.com/egwct/egwct/internal/cli
LDFLAGS  := -s -w -X $(CLI).version=$(VERSION) -X $(CLI).commit=$(COMMIT) -X $(CLI).date=$(DATE)
# Static binaries (no cgo, no libc): they run on a scratch image and any distro.
GOBUILD   = CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'

# Every platform egwct ships for. Linux has every command; macOS and
# Windows have those that need no kernel (validate, profiles, version,
# completion): the node commands exit 3 there saying they need Linux.
PLATFORMS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64
# Where make cross puts bin/<os>_<arch>/egwct[.exe].
CROSS_DIR ?= bin

# Fuzz targets as package:Target.
FUZZ_TARGETS := \
	./pkg/policy:FuzzParseText \
	./pkg/policy:FuzzParseDuration \
	./pkg/policy:FuzzRead \
	./pkg/validate:FuzzValidate \
	./pkg/nodeconfig:FuzzParse

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## Install what the build and tests need (Go modules; tmux for the top end-to-end test; pre-commit for the hooks' test; skopeo for the image's push test; promtool for the alerts' test)
	@command -v $(GO) >/dev/null || { echo "Go is required: https://go.dev/doc/install" >&2; exit 1; }
	$(GO) mod download
	@hack/promtool.sh >/dev/null || echo "promtool is missing: the alerts' promtool test will be skipped" >&2
	@command -v tmux >/dev/null || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux; \
		else echo "tmux is missing: the end-to-end test of egwct top will be skipped" >&2; fi; }
	@command -v pre-commit >/dev/null || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pre-commit; \
		else echo "pre-commit is missing: the test of .pre-commit-hooks.yaml will be skipped" >&2; fi; }
	@command -v skopeo >/dev/null || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq skopeo; \
		else echo "skopeo is missing: the test of README's skopeo copy of the image will be skipped" >&2; fi; }

# The BPF toolchain (only to regenerate pkg/sweep's committed bpf2go output).
BPF_PKGS := clang-14 llvm-14 libbpf-dev

.PHONY: bpf-deps
bpf-deps: ## Install clang-14 and libbpf headers (Debian) for make generate
	@if ! command -v clang-14 >/dev/null || [ ! -f /usr/include/bpf/bpf_helpers.h ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BPF_PKGS); \
	fi

.PHONY: generate
generate: bpf-deps ## Rebuild the BPF program and its Go bindings (bpf2go)
	$(GO) generate ./pkg/sweep

.PHONY: build
build: deps ## Build bin/egwct (static, version stamped)
	$(GOBUILD) -o $(BIN) ./cmd/egwct

.PHONY: cross
cross: ## Build every platform of PLATFORMS into bin/<os>_<arch>/
	@set -e; for p in $(PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; ext=; [ $$os = windows ] && ext=.exe; \
		echo "build $$os/$$arch"; \
		GOOS=$$os GOARCH=$$arch $(GOBUILD) -o $(CROSS_DIR)/$${os}_$${arch}/egwct$$ext ./cmd/egwct; \
	done

# kube-apiserver and etcd for the Kubernetes integration tests, built from
# the Go module proxy into a cache outside the repository (about 4 min the
# first time, seconds after); see hack/envtest.sh and docs/kubernetes.md.
ENVTEST = GO=$(GO) hack/envtest.sh

# The release archives: dist/egwct_<os>_<arch>.tar.gz (names other tools
# download by), the Helm chart dist/egwct-<version>.tgz, dist/checksums.txt
# (sha256) and dist/egwct.krew.yaml.
.PHONY: release
release: cross ## Build every platform and pack dist/: archives, the Helm chart, checksums.txt, krew manifest
	$(GO) run ./internal/release -version $(VERSION) -date $(DATE) -platforms '$(PLATFORMS)' -bin $(CROSS_DIR)

# The agent's image: an OCI image index of IMAGE_PLATFORMS, each the static
# binary of make cross on an empty base, written as an OCI layout without
# a Docker daemon (hack/image.sh: go-containerregistry in the tool module
# hack/image, built once into a cache outside the repository). Its tag in
# the layout is the version, as the Helm chart's default image.tag
# ("v" and the chart's appVersion) for a tagged release; README "Container
# image" says how to push it.
IMAGE_PLATFORMS := linux/amd64 linux/arm64
IMAGE_DIR       ?= dist/image
IMAGE_TAG       ?= $(VERSION)

.PHONY: image
image: ## Build the agent's OCI image (linux/amd64, linux/arm64) into dist/image, reproducibly, and print its digest
	@$(MAKE) --no-print-directory cross PLATFORMS='$(IMAGE_PLATFORMS)'
	GO=$(GO) hack/image.sh -bin '$(CROSS_DIR)' -out '$(IMAGE_DIR)' -platforms '$(IMAGE_PLATFORMS)' \
		-version '$(VERSION)' -revision '$(COMMIT)' -created '$(DATE)' -tag '$(IMAGE_TAG)'

.PHONY: envtest
envtest: ## Build (or reuse) the API server binaries the Kubernetes tests use
	@$(ENVTEST) >/dev/null

# The Helm chart's renderer (Helm's Go library, the tool module hack/chart),
# built once into the same cache; make deploy and the chart's tests use it.
CHART = GO=$(GO) hack/chart.sh

.PHONY: test
# Every test runs under the race detector: the agents the CLI tests run
# in one process, the agent's loop and its detection, the informers and
# the Events writer, the metrics server, top's fetches, the map walk's
# reader and the sweep tests' concurrent writers all have goroutines that
# meet, and the detector costs the other packages little (their time is
# in the kernel, the API server and the binaries they run).
test: deps lint ## Install what the tests need, then run all of them
	assets=$$($(ENVTEST)) && chart=$$($(CHART) --path) && helm=$$(GO=$(GO) hack/helm.sh) && \
		KUBEBUILDER_ASSETS="$$assets" EGWCT_CHART="$$chart" EGWCT_HELM="$$helm" $(GO) test -race -count=1 -timeout 20m ./...
	cd hack/verify-profiles && $(GO) test -count=1 ./...
	@# make image, read back and pushed: 1-2 min once egwct's linux/amd64 and
	@# linux/arm64 builds are cached (the first time they cost ~9 min of CPU)
	cd hack/image && $(GO) test -count=1 -timeout 20m ./...
	$(MAKE) --no-print-directory promcheck

# The chart's dashboard and alerts: every PromQL expression parses and
# names only metrics of docs/metrics.md; promtool test rules on synthetic
# series for every alert. A tool module of its own (Prometheus' parser);
# its build is cached by go, the chart renderer and promtool in
# ~/.cache/egwct (hack/chart.sh, hack/promtool.sh).
.PHONY: promcheck
promcheck: ## Check the Helm chart's dashboard and alerts (PromQL against docs/metrics.md; promtool test rules)
	promtool=$$(hack/promtool.sh) || echo "promtool is missing: its test is skipped (it fails with CI=true)" >&2; \
	cd hack/promcheck && EGWCT_PROMTOOL="$$promtool" $(GO) test -count=1 ./...

# docs/metrics.md: the metric families of a running agent's /metrics.
.PHONY: metrics-doc
metrics-doc: ## As root: regenerate docs/metrics.md from an agent on a lab node (needs the API server binaries: make envtest)
	assets=$$($(ENVTEST)) && KUBEBUILDER_ASSETS="$$assets" $(GO) test ./internal/cli -run '^TestMetricsReference$$' -count=1 -update

.PHONY: vmtest
vmtest: ## As root: the BPF tests under Debian's 5.10, 6.1 and 6.12 kernels (qemu, TCG)
	bash hack/vmtest.sh

.PHONY: vmtest-arm64
vmtest-arm64: ## As root: the BPF tests, built for arm64, under Debian's arm64 kernel (qemu, TCG; about 8 minutes)
	bash hack/vmtest.sh arm64/linux-image-arm64

.PHONY: lint
lint: ## go vet and gofmt
	$(GO) vet ./...
	cd hack/verify-profiles && $(GO) vet ./...
	cd hack/chart && $(GO) vet ./...
	cd hack/image && $(GO) vet ./...
	cd hack/promcheck && $(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

.PHONY: fuzz
fuzz: deps ## Run every fuzz target for FUZZTIME (default 15s) each
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name ($(FUZZTIME))"; \
		$(GO) test $$pkg -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME); \
	done

.PHONY: bench
bench: deps ## Benchmarks (ratios against a baseline of the same run; the CT and sweeper ones need root)
	$(GO) test ./pkg/validate -run '^$$' -bench Validate10k -benchtime 5x -count 3
	$(GO) test ./internal/cli -run '^$$' -bench CTListJSON -benchtime 3x
	$(GO) test ./pkg/sweep -run '^$$' -bench 'Sweep|Backlog' -benchtime 1x -count 2
	$(GO) test ./internal/cli -run '^$$' -bench ApplyLab -benchtime 1x -timeout 40m

DEMO_FS  ?= /tmp/egwct-demo
DEMO_VER ?= 1.18.3
DEMO      = ./$(BIN) $(1) --bpffs $(DEMO_FS) --cilium-state-dir $(DEMO_FS).state --cilium-version $(DEMO_VER)

.PHONY: demo
demo: build ## As root: a simulated gateway node, listed, validated, applied, watched in egwct top, removed
	@./$(BIN) lab down --bpffs $(DEMO_FS) >/dev/null 2>&1 || true
	./$(BIN) lab up --bpffs $(DEMO_FS) --cilium-version $(DEMO_VER) --flows 20000
	$(call DEMO,ct list) --state established --idle-over 20m | head -n 12
	$(call DEMO,ct list) --expired | head -n 6
	$(call DEMO,nat list) --src 10.1.0.2 | head -n 6
	$(call DEMO,egress list) | head -n 6
	./$(BIN) validate --cilium-version $(DEMO_VER) $(DEMO_FS).state/manifests/policies.yaml
	$(call DEMO,apply) -f $(DEMO_FS).state/manifests
	@# egwct top, live on a terminal (q quits), else one snapshot; traffic and an agent meanwhile
	./$(BIN) lab drive --bpffs $(DEMO_FS) >/dev/null 2>&1 & drive=$$!; \
	$(call DEMO,agent) -f $(DEMO_FS).state/manifests --metrics-addr '' >/dev/null 2>&1 & agent=$$!; \
	sleep 1; $(call DEMO,top); rc=$$?; kill $$drive $$agent; wait; exit $$rc
	./$(BIN) lab down --bpffs $(DEMO_FS)

# Which releases verify-profiles checks; by default every release the
# profiles claim (their VerifiedAgainst lists). CI: VERIFY_ARGS='-newest -minors 1.19,1.20'.
VERIFY_ARGS ?=

.PHONY: verify-profiles
verify-profiles: ## As root: check pkg/profiles against Cilium's own Go code, per release (hack/verify-profiles; about 1-5 min a release the first time)
	cd hack/verify-profiles && $(GO) run . $(VERIFY_ARGS)

.PHONY: docs
docs: ## Regenerate docs/timeouts.md, deploy/admission-policy.yaml and the chart's, the CLI reference docs/cli/, the man pages docs/man/, and deploy/egwct.yaml
	$(GO) run ./internal/gendocs
	@$(MAKE) --no-print-directory deploy

# deploy/egwct.yaml is the chart rendered with its defaults, plus the
# Namespace kubectl apply needs (TestDeployIsTheChart keeps it fresh).
.PHONY: deploy
deploy: ## Render deploy/egwct.yaml from the Helm chart deploy/helm/egwct
	$(CHART) -n egwct-system --set namespace.create=true deploy/helm/egwct > deploy/egwct.yaml.tmp
	mv deploy/egwct.yaml.tmp deploy/egwct.yaml

.PHONY: clean
clean: ## Remove build output
	rm -rf bin/ dist/
