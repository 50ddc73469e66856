#!/usr/bin/env bash
# Runs every fuzz target in the repository for a bounded time each.
#
#   test/fuzz.sh [FUZZTIME]      default 30s; `make fuzz FUZZTIME=5s` in CI
#
# Targets are found, not listed: every `func FuzzXxx(f *testing.F)` in a
# _test.go file. Each runs with -run='^$' (no unit tests) and its seed corpus
# in testdata/fuzz/FuzzXxx/. A failure stops nothing: every target runs, the
# failures are listed at the end, and the exit status is non-zero. A crasher
# is saved by `go test` under testdata/fuzz/FuzzXxx/ — commit it with the fix.
set -uo pipefail

fuzztime="${1:-${FUZZTIME:-30s}}"
cd "$(dirname "$0")/.."
export CGO_ENABLED=0

mapfile -t targets < <(
	grep -rlE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]+\(f \*testing\.F\)' cmd internal test 2>/dev/null |
		while read -r file; do
			# Skip packages behind build tags (the e2e suite needs root and namespaces).
			head -n 3 "$file" | grep -q '^//go:build' && continue
			grep -oE '^func Fuzz[A-Za-z0-9_]+' "$file" | sed 's/^func //' |
				while read -r name; do echo "./$(dirname "$file") $name"; done
		done | sort -u
)

if [ "${#targets[@]}" -eq 0 ]; then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi

failed=()
for t in "${targets[@]}"; do
	pkg="${t% *}"
	name="${t#* }"
	echo "=== fuzz $name ($pkg) for $fuzztime"
	if ! go test -run='^$' -fuzz="^${name}\$" -fuzztime="$fuzztime" "$pkg"; then
		failed+=("$name ($pkg)")
	fi
done

echo
if [ "${#failed[@]}" -gt 0 ]; then
	printf 'fuzz: FAILED: %s\n' "${failed[@]}" >&2
	exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran for $fuzztime each without a failure"
