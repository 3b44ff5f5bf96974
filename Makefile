# Backstop — build, test and run.
#
#   make test      build the test tools (first time only), then run every test
#   make run       local control plane + EC2 simulator + controller (see README)
#   make verify    generated files fresh, gofmt and go vet clean
#
# Every tool is pinned in tools/go.mod and built from source into bin/ on first
# use; nothing is downloaded but Go modules.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

BIN := $(CURDIR)/bin
GO ?= go

# Versions are read from tools/go.mod so that the pins live in one place.
tool_version = $(shell awk '$$1 == "$(1)" && $$2 ~ /^v/ { print $$2; exit }' $(CURDIR)/tools/go.mod)
KUBE_VERSION := $(call tool_version,k8s.io/kubernetes)
ETCD_VERSION := $(call tool_version,go.etcd.io/etcd/server/v3)
KUBE_MINOR := $(word 2,$(subst ., ,$(KUBE_VERSION)))

KUBE_LDFLAGS := -s -w \
	-X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 \
	-X k8s.io/component-base/version.gitMinor=$(KUBE_MINOR) \
	-X k8s.io/component-base/version.gitTreeState=clean \
	-X k8s.io/client-go/pkg/version.gitVersion=$(KUBE_VERSION)

# The tools the tests and `make run` need (the e2e suite runs the whole loop;
# the chart suite renders the chart with helm); the rest are built by `make tools`.
TEST_TOOLS := $(BIN)/kube-apiserver $(BIN)/etcd $(BIN)/kube-scheduler $(BIN)/kube-controller-manager $(BIN)/kwok $(BIN)/helm
ALL_TOOLS := $(TEST_TOOLS) $(BIN)/kube-scheduler $(BIN)/kube-controller-manager \
	$(BIN)/controller-gen $(BIN)/ginkgo $(BIN)/helm $(BIN)/ko $(BIN)/kwok

export KUBEBUILDER_ASSETS := $(BIN)

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / { printf "  %-10s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

##@ Tools (built from tools/go.mod into bin/, once)

.PHONY: tools
tools: $(ALL_TOOLS) ## build every pinned tool that is missing (first run: several minutes on 2 cores)

# Builds one tool from the tools module: $(1) name, $(2) package, $(3) ldflags, $(4) version shown.
define build_tool
	@echo "tools: building $(1) $(4) (from source; the first build of the Kubernetes binaries takes several minutes on 2 cores)"
	@mkdir -p $(BIN)
	@cd tools && $(GO) build -trimpath -ldflags "$(3)" -o $(BIN)/$(1).tmp $(2) && mv $(BIN)/$(1).tmp $(BIN)/$(1)
endef

$(BIN)/kube-apiserver: tools/go.mod tools/go.sum
	$(call build_tool,kube-apiserver,k8s.io/kubernetes/cmd/kube-apiserver,$(KUBE_LDFLAGS),$(KUBE_VERSION))
$(BIN)/kube-scheduler: tools/go.mod tools/go.sum
	$(call build_tool,kube-scheduler,k8s.io/kubernetes/cmd/kube-scheduler,$(KUBE_LDFLAGS),$(KUBE_VERSION))
$(BIN)/kube-controller-manager: tools/go.mod tools/go.sum
	$(call build_tool,kube-controller-manager,k8s.io/kubernetes/cmd/kube-controller-manager,$(KUBE_LDFLAGS),$(KUBE_VERSION))
$(BIN)/etcd: tools/go.mod tools/go.sum
	$(call build_tool,etcd,go.etcd.io/etcd/server/v3,-s -w,$(ETCD_VERSION))
$(BIN)/controller-gen: tools/go.mod tools/go.sum
	$(call build_tool,controller-gen,sigs.k8s.io/controller-tools/cmd/controller-gen,-s -w,$(call tool_version,sigs.k8s.io/controller-tools))
$(BIN)/ginkgo: tools/go.mod tools/go.sum
	$(call build_tool,ginkgo,github.com/onsi/ginkgo/v2/ginkgo,-s -w,$(call tool_version,github.com/onsi/ginkgo/v2))
$(BIN)/helm: tools/go.mod tools/go.sum
	$(call build_tool,helm,helm.sh/helm/v3/cmd/helm,-s -w -X helm.sh/helm/v3/internal/version.version=$(call tool_version,helm.sh/helm/v3),$(call tool_version,helm.sh/helm/v3))
$(BIN)/ko: tools/go.mod tools/go.sum
	$(call build_tool,ko,github.com/google/ko,-s -w,$(call tool_version,github.com/google/ko))
$(BIN)/kwok: tools/go.mod tools/go.sum
	$(call build_tool,kwok,sigs.k8s.io/kwok/cmd/kwok,-s -w,$(call tool_version,sigs.k8s.io/kwok))

# Karpenter, the peer of `make bench-e2e`, is pinned in a module of its own
# (tools/karpenter); its CRDs are copied from the same module version. Built
# as ko builds Karpenter's image (static, no cgo), as Backstop is for the bench.
$(BIN)/karpenter-kwok: tools/karpenter/go.mod tools/karpenter/go.sum
	@echo "tools: building karpenter-kwok $$(cd tools/karpenter && $(GO) list -m -f '{{.Version}}' sigs.k8s.io/karpenter) (Karpenter's kwok provider, from source; a few minutes on 2 cores)"
	@mkdir -p $(BIN)
	@cd tools/karpenter && CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(BIN)/karpenter-kwok.tmp sigs.k8s.io/karpenter/kwok && mv $(BIN)/karpenter-kwok.tmp $(BIN)/karpenter-kwok
$(BIN)/karpenter-crds: tools/karpenter/go.mod tools/karpenter/go.sum
	@dir=$$(cd tools/karpenter && $(GO) list -m -f '{{.Dir}}' sigs.k8s.io/karpenter) && \
	rm -rf $@.tmp && mkdir -p $@.tmp && cp $$dir/pkg/apis/crds/*.yaml $$dir/kwok/apis/crds/*.yaml $@.tmp/ && \
	chmod u+w $@.tmp/* && rm -rf $@ && mv $@.tmp $@

##@ Benchmarks (not part of `make test`)

BENCH_ARGS ?=

.PHONY: bench-e2e
bench-e2e: $(TEST_TOOLS) $(BIN)/karpenter-kwok $(BIN)/karpenter-crds ## Backstop and Karpenter side by side, end to end (N=100, 500, 2000; about 20 min); BENCH_ARGS="-n 500 -pairs 1"
	$(GO) run ./test/benche2e $(BENCH_ARGS)

.PHONY: bench-consolidation
bench-consolidation: ## one consolidation decision over 1,000 nodes and 10,000 pods (seconds)
	$(GO) test ./pkg/controllers/disruption -run '^$$' -bench ConsolidationDecision -benchtime 5x

##@ Development

.PHONY: generate
generate: $(BIN)/controller-gen ## regenerate deepcopy code and CRDs (charts/backstop/crds, charts/backstop-crd/templates)
	$(BIN)/controller-gen object paths=./apis/...
	$(BIN)/controller-gen crd paths=./apis/... output:crd:artifacts:config=charts/backstop/crds
	@# The CRD chart serves the same CRDs as templates (so helm upgrade upgrades them), with its annotations value.
	rm -f charts/backstop-crd/templates/*.yaml && for f in charts/backstop/crds/*.yaml; do \
	  sed '/controller-gen.kubebuilder.io\/version/a\    {{- with .Values.annotations }}{{ toYaml . | nindent 4 }}{{- end }}' $$f > charts/backstop-crd/templates/$$(basename $$f); done

GENERATED = charts/backstop/crds charts/backstop-crd/templates $(shell find apis -name zz_generated.deepcopy.go)

.PHONY: verify
verify: $(BIN)/controller-gen $(BIN)/helm ## fail when generated files are stale, gofmt / go vet complain, or the chart does not lint
	@snap=$$(mktemp -d) && tar -cf $$snap/before.tar $(GENERATED) && \
	$(MAKE) --no-print-directory generate >/dev/null && \
	mkdir $$snap/before && tar -xf $$snap/before.tar -C $$snap/before && \
	for f in $(GENERATED); do diff -r -q $$snap/before/$$f $$f >/dev/null || stale="$${stale:-} $$f"; done; \
	rm -rf $$snap; test -z "$${stale:-}" || { echo "generated files were stale and are now regenerated:$$stale; commit them"; exit 1; }
	@bad=$$(gofmt -l $$(git ls-files '*.go') $$(git ls-files --others --exclude-standard '*.go')); \
	test -z "$$bad" || { echo "gofmt would change: $$bad"; exit 1; }
	$(GO) vet ./...
	cd tools && $(GO) vet ./...
	$(BIN)/helm lint --strict charts/backstop --set settings.clusterName=verify
	$(BIN)/helm lint --strict charts/backstop-crd
	$(BIN)/helm lint --strict charts/backstop-nodepools --set clusterName=verify

.PHONY: build
build: ## build the binaries into bin/
	$(GO) build -o $(BIN)/ ./cmd/...

.PHONY: run
run: $(TEST_TOOLS) ## run the whole loop locally: control plane, KWOK, EC2 simulator, Backstop, and a demo Deployment (Ctrl-C stops it)
	$(GO) run ./cmd/local $(RUN_ARGS)

.PHONY: test
test: $(TEST_TOOLS) ## run every test against a real kube-apiserver and etcd built into bin/
	$(GO) test ./... -count=1 -timeout 25m
