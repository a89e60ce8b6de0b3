# kubestream developer targets. `make help` lists them.

SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help

GO        ?= go
BIN       := $(CURDIR)/bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
BUF_VERSION           := v1.75.0
PROTOC_GEN_GO_VERSION := $(shell $(GO) list -m -f '{{.Version}}' google.golang.org/protobuf)
BUF       := $(BIN)/buf
# Where release images go (make image-push) and which binaries make dist builds.
REGISTRY  ?= ghcr.io/kubestream
PLATFORMS ?= linux/amd64 linux/arm64
# Arguments passed to `kubestream run` by `make run`, e.g. make run RUN_ARGS="--kinds pods".
RUN_ARGS  ?=

export PATH := $(BIN):$(PATH)

.PHONY: help
help: ## list targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-18s %s\n", $$1, $$2}'

.PHONY: build
build: ## build bin/kubestream (static)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/kubestream ./cmd/kubestream

.PHONY: run
# On a terminal the script runs as its own foreground job (bash -m), so ^C
# reaches it and its children but not make, which would otherwise report the
# signal (exit 130) however cleanly kubestream stopped.
run: build ## run kubestream against the current kubeconfig's cluster, else a local control plane (built on first use); ^C stops it cleanly, exit 0
	@if [ -t 0 ]; then bash -mc 'hack/run.sh "$$@"; exit $$?' run.sh $(RUN_ARGS); else hack/run.sh $(RUN_ARGS); fi

.PHONY: test-deps
test-deps: ## install the programs tests need beyond Go (kcat, protoc, nats-server, jq, Python packages): apt-get as root, else a list of what to install
	@hack/install-test-deps.sh

.PHONY: controlplane
controlplane: ## build etcd, kube-apiserver and kubectl for tests into the cache (cold: about 5 minutes of compiling on 2 idle cores plus downloads, once)
	@hack/build-controlplane.sh >/dev/null

.PHONY: helm
helm: ## build helm (pinned in hack/tools/go.mod) into the cache, for the chart tests (about 2 minutes the first time)
	@hack/build-helm.sh >/dev/null

.PHONY: helm-lint
helm-lint: helm ## lint and render the chart in deploy/helm/kubestream
	$$(hack/build-helm.sh) lint --strict deploy/helm/kubestream --set 'sink.kafka.brokers={kafka:9092}'

.PHONY: tools
tools: $(BUF) $(BIN)/protoc-gen-go ## install pinned buf and protoc-gen-go into bin/

$(BUF):
	GOBIN=$(BIN) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)

$(BIN)/protoc-gen-go:
	GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

.PHONY: generate
generate: tools ## regenerate Go code from proto/, and the Python example's classes (needs protoc)
	$(BUF) generate
	protoc --python_out=examples/python/gen -I proto proto/kubestream/v1/event.proto

.PHONY: check-generated
check-generated: generate ## fail when checked-in generated code is stale
	@git diff --exit-code -- pkg/api examples/python/gen || { echo "generated code is stale: run 'make generate' and commit the result"; exit 1; }
	@test -z "$$(git status --porcelain -- pkg/api examples/python/gen)" || { echo "generate produced new files: run 'make generate' and commit them"; exit 1; }

.PHONY: lint
lint: tools ## gofmt, go vet, buf lint, buf breaking against main
	@bad=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); test -z "$$bad" || { echo "gofmt needed: $$bad"; exit 1; }
	$(GO) vet ./...
	$(BUF) lint
	@if git rev-parse --verify -q main >/dev/null; then $(BUF) breaking --against "$$(git rev-parse --git-common-dir)#branch=main"; fi

.PHONY: verify
verify: lint check-generated ## all static checks

.PHONY: test-unit
test-unit: ## package tests under pkg/ and cmd/ (a few start the control plane)
	$(GO) test -race -count=1 ./pkg/... ./cmd/...

.PHONY: test
test: test-deps verify controlplane helm ## every test: static checks, unit, integration against a real apiserver, end to end
	$(GO) test -race -count=1 -timeout 20m ./...

.PHONY: e2e
e2e: controlplane helm ## black-box tests of the built binary (stdout, Kafka, NATS, fault runs, deploy manifests, chart, metrics and alerts)
	$(GO) test -count=1 -timeout 15m ./test/e2e/... ./test/kafka/... ./test/nats/... ./test/faults/... ./test/deploy/... ./test/helm/... ./test/monitoring/...

.PHONY: examples
examples: controlplane ## run the Go and Python consumer examples' tests against a real apiserver and a Kafka wire peer
	$(GO) test -count=1 -timeout 10m ./examples/...

.PHONY: property
property: ## the consumer-contract property test with 1000 seeds (CI runs 25); PROPERTY_SEEDS=N to change
	KUBESTREAM_PROPERTY_SEEDS=$(or $(PROPERTY_SEEDS),1000) $(GO) test -count=1 -timeout 30m -run 'TestConsumerContractUnderFaults' ./pkg/source/

.PHONY: fuzz
fuzz: ## fuzz the NATS subject mapping for 30 s each
	$(GO) test -run '^$$' -fuzz FuzzEscapeToken -fuzztime 30s ./pkg/sink/nats/
	$(GO) test -run '^$$' -fuzz FuzzSubjectRoundTrip -fuzztime 30s ./pkg/sink/nats/

.PHONY: check-packaging
check-packaging: controlplane ## Dockerfile rules, the image's build command, compose and deploy/ checks (no Docker needed)
	hack/check-packaging.sh

.PHONY: image
image: ## build the container image (needs a Docker engine)
	docker build --build-arg VERSION=$(VERSION) --build-arg REVISION=$$(git rev-parse HEAD) --build-arg CREATED=$$(date -u +%FT%TZ) -t kubestream:$(VERSION) .

.PHONY: dist
dist: ## release binaries for $(PLATFORMS) and their SHA256SUMS into dist/, versioned by git describe
	rm -rf dist && mkdir -p dist
	for p in $(PLATFORMS); do os=$${p%/*}; arch=$${p#*/}; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/kubestream-$(VERSION)-$$os-$$arch ./cmd/kubestream || exit 1; \
	done
	cd dist && sha256sum kubestream-* > SHA256SUMS

.PHONY: image-push
image-push: ## build and push the multi-arch image $(REGISTRY)/kubestream:$(VERSION) (Docker with buildx, logged in to the registry)
	docker buildx build --platform linux/amd64,linux/arm64 --build-arg VERSION=$(VERSION) --build-arg REVISION=$$(git rev-parse HEAD) --build-arg CREATED=$$(date -u +%FT%TZ) -t $(REGISTRY)/kubestream:$(VERSION) --push .

.PHONY: bench
BENCH_ARGS ?= --sinks kafka,nats,stdout --rounds 2 --out-dir bench-results

bench: controlplane ## performance: the load harness against the bare-watch floor (about 10 min on 2 shared cores, BENCH_ARGS), restart and failover (about 12 min), Go benchmarks (figures in docs/)
	$(GO) run ./hack/bench $(BENCH_ARGS)
	$(GO) run ./hack/bench-resume
	$(GO) test -run '^$$' -bench . -benchmem ./test/bench/ ./pkg/imagestorage/
	$(GO) test -run '^$$' -bench KafkaSink -benchmem ./pkg/sink/kafka/
	$(GO) test -run '^$$' -bench . -benchtime 4s ./pkg/sink/nats/

.PHONY: clean
clean: ## remove build output
	rm -rf $(BIN)
