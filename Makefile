# egwct — run `make` or `make help` for the targets.

GO       ?= go
BIN      ?= bin/egwct
FUZZTIME ?= 15s
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X github.com/egwct/egwct/internal/cli.version=$(VERSION)

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
deps: ## Install what the build and tests need (Go modules)
	@command -v $(GO) >/dev/null || { echo "Go is required: https://go.dev/doc/install" >&2; exit 1; }
	$(GO) mod download

.PHONY: build
build: deps ## Build bin/egwct
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/egwct

.PHONY: test
test: deps lint ## Install what the tests need, then run all of them
	$(GO) test -count=1 ./...

.PHONY: lint
lint: ## go vet and gofmt
	$(GO) vet ./...
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
bench: deps ## Benchmarks: validate vs bare YAML decode of 10,000 documents
	$(GO) test ./pkg/validate -run '^$$' -bench Validate10k -benchtime 5x -count 3

.PHONY: docs
docs: ## Regenerate docs/timeouts.md from pkg/profiles
	$(GO) run ./internal/gendocs -o docs/timeouts.md

.PHONY: clean
clean: ## Remove build output
	rm -rf bin/
