# onprem-lb. `make demo` runs it, `make test` tests it (as root: the lab uses network namespaces).
SHELL := /bin/bash
GO    ?= go
BIN   := bin
# Lab binaries (etcd, kube-apiserver, kube-controller-manager, kube-proxy, kubectl) are built
# once into a cache outside the work tree; test/tools/build.sh prints their directory.
TOOLS_BIN = $$(test/tools/build.sh)
# helm, pinned in test/tools/gotool.sh, installed once into the same cache.
HELM      = $$(test/tools/gotool.sh helm)
UNIT_PKGS = $$($(GO) list ./... | grep -v '/test/')
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X=k8s.io/component-base/version.gitVersion=v0.0.0-$(VERSION)
# Images (make images): named $(REGISTRY)/NAME:$(VERSION), written as OCI archives to
# $(IMAGES_OUT); the lab's own images (pause, backend) are onprem-lb.local/lab/NAME:$(VERSION).
REGISTRY   ?= ghcr.io/onprem-lb
IMAGES_OUT ?= $(BIN)/images
IMAGES     := onprem-cloud-controller-manager onprem-speaker
LAB_IMAGES := pause backend
BUILD_IMAGES = GOFLAGS='-buildvcs=false "-ldflags=-s -w $(LDFLAGS)"' REGISTRY=$(REGISTRY) images/build.sh $(IMAGES_OUT) $(VERSION)

.PHONY: all build tools deps images lab-images push test unit chart lab-test lab lab-down demo bench vet fmt clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/... ./test/cmd/lab

deps:
	test/deps.sh

# OCI images without Docker: bases made from Debian packages, the programs put on them by ko.
images:
	$(BUILD_IMAGES) $(IMAGES)

lab-images:
	$(BUILD_IMAGES) $(LAB_IMAGES)

# make push REGISTRY=registry.example.com/onprem-lb: the images, to any registry crane can log in to.
push: images
	images/push.sh $(IMAGES_OUT) $(IMAGES)

tools:
	test/tools/build.sh

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	cd images && $(GO) vet ./...

# Unit tests (with -race) and lab tests, in one command. The lab tests run one package at a
# time: a machine holds one lab.
test: deps vet unit chart lab-test

unit:
	pkgs=$(UNIT_PKGS) && if [ -n "$$pkgs" ]; then $(GO) test -race -count=1 $$pkgs; fi
	cd images && $(GO) test -race -count=1 ./...

# The Helm chart: helm lint --strict and helm template, with its defaults and with each
# charts/onprem-lb/ci/*.yaml, for the oldest Kubernetes it supports (Chart.yaml kubeVersion).
# test/chart (lab-test) checks what it renders.
chart:
	helm=$(HELM) && for values in "" charts/onprem-lb/ci/*.yaml; do \
		args=$${values:+--values $$values}; \
		$$helm lint --strict --kube-version 1.30.0 charts/onprem-lb $$args && \
		$$helm template --kube-version 1.30.0 onprem-lb charts/onprem-lb $$args >/dev/null || exit 1; \
	done

lab-test: deps images lab-images
	bin=$(TOOLS_BIN) && helm=$(HELM) && ONPREM_LB_TOOLS_BIN=$$bin ONPREM_LB_HELM=$$helm \
		ONPREM_LB_IMAGES=$(abspath $(IMAGES_OUT)) ONPREM_LB_IMAGE_TAG=$(VERSION) \
		$(GO) test -count=1 -p 1 -timeout 30m ./test/...

# A lab that stays up: three Ready nodes with kube-proxy, a client on the LAN.
lab: deps build
	bin=$(TOOLS_BIN) && ONPREM_LB_TOOLS_BIN=$$bin $(BIN)/lab up

# The lab with real nodes and onprem-lb installed the way a user would (our images,
# kubectl apply -k), the example Services, traffic through their IPs and a node killed; it
# stays up (make lab-down).
demo: deps build images lab-images
	bin=$(TOOLS_BIN) && ONPREM_LB_TOOLS_BIN=$$bin $(BIN)/lab demo --images $(IMAGES_OUT)

lab-down: build
	$(BIN)/lab down

# Figures, not assertions: Go benchmarks (5 runs each) and the lab benchmarks (3 runs, each a
# whole scenario: see test/e2e/*bench_test.go), then BENCHMARKS.md: every figure DESIGN.md
# sets a target for, the median of the runs, and the machine. One package at a time (-p 1):
# benchmarks of two packages at once share the CPUs, and each one's figures then depend on
# the other's (a full iptables sync of 10,000 Services took 3.5 s beside another package's
# benchmarks, 2.4 s alone).
bench: deps images lab-images
	@mkdir -p $(BIN)
	set -o pipefail; pkgs=$(UNIT_PKGS) && $(GO) test -run '^$$' -bench . -benchmem -count 5 -p 1 $$pkgs | tee $(BIN)/bench-go.txt
	set -o pipefail; bin=$(TOOLS_BIN) && ONPREM_LB_TOOLS_BIN=$$bin ONPREM_LB_IMAGES=$(abspath $(IMAGES_OUT)) ONPREM_LB_IMAGE_TAG=$(VERSION) \
		$(GO) test -run '^$$' -bench . -benchtime 1x -count 3 -p 1 -timeout 150m ./test/... | tee $(BIN)/bench-lab.txt
	$(GO) run ./test/cmd/benchreport -o BENCHMARKS.md $(BIN)/bench-go.txt $(BIN)/bench-lab.txt

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN)
