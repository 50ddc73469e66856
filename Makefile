# Panopticon — see README.md. `make help` lists the targets.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GO      ?= go
GOFLAGS_BUILD = -trimpath -ldflags "-s -w -X main.version=$(VERSION)"
export CGO_ENABLED = 0

.PHONY: help build test unit k8s e2e e2e-docker fuzz fuzz-brief soak bench lint clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/panopticon (static)
	$(GO) build $(GOFLAGS_BUILD) -o bin/panopticon ./cmd/panopticon

unit: ## unit tests (no root, no network beyond loopback)
	$(GO) test -count=1 ./...

k8s: ## validate the Kubernetes manifests without a cluster (own Go module)
	cd deploy/kubernetes/validate && $(GO) vet ./... && $(GO) test -count=1 ./...

e2e: ## end-to-end tests in network namespaces (root)
	$(GO) test -tags e2e -count=1 -timeout 15m ./test/e2e/

e2e-docker: ## docker compose deployment test (needs a Docker engine)
	test/docker/run.sh

test: unit k8s fuzz-brief e2e ## unit + k8s manifests + brief fuzzing + e2e (+ e2e-docker when a Docker engine answers)
	@if docker info >/dev/null 2>&1; then $(MAKE) e2e-docker; \
	elif [ "$$CI" = "true" ] && command -v docker >/dev/null 2>&1; then \
		echo "CI=true and docker is installed but the engine does not answer" >&2; exit 1; \
	else echo "no Docker engine: skipping e2e-docker"; fi

fuzz: ## run every fuzz target for FUZZTIME (default 30s)
	test/fuzz.sh $(or $(FUZZTIME),30s)

fuzz-brief: ## every fuzz target for 5s (part of test)
	test/fuzz.sh 5s

soak: ## 100k requests through panopticon; memory and fds must stay flat (root)
	SOAK=1 $(GO) test -tags e2e -count=1 -run TestSoak -timeout 30m -v ./test/e2e/

bench: ## side-by-side benchmark (root; never part of test)
	bench/run.sh

lint: ## go vet + gofmt
	$(GO) vet ./...
	$(GO) vet -tags e2e ./test/e2e/
	cd test/browser && $(GO) vet ./...
	cd bench && $(GO) vet ./...
	@test -z "$$(gofmt -l cmd internal test deploy bench)" || (gofmt -l cmd internal test deploy bench; exit 1)

clean: ## remove build output
	rm -rf bin
