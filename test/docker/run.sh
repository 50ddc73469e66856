#!/bin/sh
# The Makefile's entry point for `make e2e-docker`; the test itself is e2e.sh.
exec "$(dirname "$0")/e2e.sh" "$@"
