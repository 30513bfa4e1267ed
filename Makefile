# pec — PEC provider core. Targets:
#   make test    install the system packages the tests need, then run every test
#   make demo    two PEC providers on loopback exchanging mail through real Postfix, Dovecot and clamd
#                (KEEP=1: then left running for a mail client until Ctrl-C)
#   make demo-keep-test  the KEEP=1 demo in a child process: printed logins work, Ctrl-C leaves nothing
#   make build   build pecmilter, pecdeliver, pecctl into bin/
#   make fuzz    every fuzz target for FUZZTIME (default 30s) each
GO      ?= go
export GOFLAGS ?= -buildvcs=false
# Go's usual place on a fresh Debian machine, when it is not on PATH
export PATH := $(PATH):/usr/local/go/bin
BINS     = pecmilter pecdeliver pecctl

.PHONY: all build test race demo demo-keep-test deps vet fuzz bench bench-fullpath clean deb

all: build

deps:
	./scripts/install-deps
	$(GO) mod download

build:
	@mkdir -p bin
	$(GO) build -trimpath -o bin/ $(addprefix ./cmd/,$(BINS))

vet:
	$(GO) vet ./...

test: deps vet
	$(GO) test -count=1 -timeout 40m ./...

# every test with the race detector, the daemons of the integration tests too
race: deps
	PEC_RACE=1 $(GO) test -race -count=1 -timeout 60m ./...

# KEEP=1: after the exchange the providers stay up with fresh passwords
# printed for a mail client, with no time limit, until Ctrl-C (or SIGTERM)
# makes the demo stop everything it started. The test binary runs itself
# (not under `go test`, which reports any interrupted run as FAIL) and the
# shell around it waits for it to finish stopping.
KEEP ?=
DEMO_KEEP = $(filter-out 0 no,$(KEEP))
demo: deps
ifeq ($(DEMO_KEEP),)
	$(GO) test -count=1 -timeout 10m -run '^TestDemo$$' -v ./demo
else
	@d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && trap : INT TERM && \
	$(GO) test -c -o "$$d/demo.test" ./demo && \
	cd demo && PEC_DEMO_KEEP=1 "$$d/demo.test" -test.run '^TestDemo$$' -test.v -test.timeout 0
endif

# what KEEP=1 prints logs in and submits, and Ctrl-C leaves nothing
# running: the demo once more in a child process (about a minute)
demo-keep-test: deps
	PEC_DEMO_KEEP_TEST=1 $(GO) test -count=1 -timeout 15m -run '^TestDemoKeep$$' -v ./demo

# every fuzz target of the module (found by scripts/fuzz-all, none listed
# here) for FUZZTIME each, one after the other; the seed corpora run in
# `make test`. `make fuzz FUZZTIME=10s` for a quicker pass.
FUZZTIME ?= 30s
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) ./scripts/fuzz-all

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./build ./store/sqlite ./store/postgres ./filter

# the whole PEC path against plain Postfix -> Dovecot on this machine
# (integration/fullpath): two providers and a plain pair, 10 KB and 1 MB,
# 1 and 16 clients, 3 rounds; then the 100 KB latency and the milter's
# peak RSS for 30 MB. Bounded: about 5 minutes on 2 cores.
# PEC_FULLPATH=quick for one shorter round.
PEC_FULLPATH ?= 1
bench-fullpath:
	PEC_FULLPATH=$(PEC_FULLPATH) $(GO) test -count=1 -timeout 30m -run '^$$' -bench . -benchtime 1x ./integration/fullpath

deb:
	./packaging/build-deb

clean:
	rm -rf bin dist
