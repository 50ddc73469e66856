#!/usr/bin/env bash
# Side-by-side benchmark: direct, panopticon, mitmproxy, squid (see bench/README.md).
# Root only. Never part of `make test`.
#
#   bench/run.sh                 # full run (~15 min): updates bench/README.md and bench/chart.png
#   BENCH_QUICK=1 bench/run.sh   # short run (~4 min): results in bench/out only
#   BENCH_PROFILE=0 …            # skip the in-process Go benchmarks and profiles
#   BENCH_SUBJECTS=direct,panopticon BENCH_PHASES=keepalive,newconn …   # a subset
#   BENCH_BASELINE=<git revision> …   # also run that revision's panopticon, as subject "baseline"
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
export CGO_ENABLED=0

if [[ $(id -u) -ne 0 ]]; then
	echo "bench: needs root (network namespaces, iptables); try: sudo make bench" >&2
	exit 1
fi

quick=${BENCH_QUICK:-0}
out=bench/out
bin=$out/bin
ts=$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$bin"

# ---- tools ----
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v mitmdump >/dev/null || need+=(mitmproxy)
[[ -x /usr/lib/squid/security_file_certgen ]] && squid -v 2>/dev/null | grep -q -- '--with-openssl' || need+=(squid-openssl)
command -v ip >/dev/null && command -v ss >/dev/null || need+=(iproute2)
command -v iptables >/dev/null || need+=(iptables)
command -v setpriv >/dev/null || need+=(util-linux)
command -v sysctl >/dev/null || need+=(procps)
/usr/bin/python3 -c 'import matplotlib' 2>/dev/null || need+=(python3-matplotlib)
if ((${#need[@]})); then
	echo "bench: installing ${need[*]}"
	apt-get update -qq
	for p in "${need[@]}"; do
		cand=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/{print $2}')
		[[ -n $cand && $cand != "(none)" ]] || { echo "bench: no package $p in the apt sources" >&2; exit 1; }
	done
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# ---- build ----
version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$bin/panopticon" ./cmd/panopticon
(cd bench && go build -trimpath -o "../$bin/panobench" ./cmd/panobench) # its own module
export PANOPTICON_VERSION=$version
baseline=
if [[ -n ${BENCH_BASELINE:-} ]]; then
	# The same build of another revision, from a clean export of it (the
	# working tree is not touched), so a change is judged within one run.
	src=$(mktemp -d)
	git archive "$BENCH_BASELINE" | tar -x -C "$src"
	basever=$(git rev-parse --short "$BENCH_BASELINE")
	(cd "$src" && go build -trimpath -ldflags "-s -w -X main.version=$basever" -o "$OLDPWD/$bin/panopticon-baseline" ./cmd/panopticon)
	rm -rf "$src"
	baseline=$bin/panopticon-baseline
	export PANOPTICON_BASELINE_VERSION=$basever
fi

# ---- clean-up, also on failure ----
cleanup() {
	for ns in $(ip netns list 2>/dev/null | awk '/^bench-/{print $1}'); do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
		ip netns delete "$ns" 2>/dev/null || true
		rm -rf "/etc/netns/$ns"
	done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cleanup # leftovers of an interrupted run

# ---- in-process Go benchmarks with CPU and allocation profiles ----
gobench=$out/gobench-$ts.txt
if [[ ${BENCH_PROFILE:-1} == 1 ]]; then
	(cd bench && go test -c -o "../$bin/egressbench.test" .)
	ip netns add bench-prof
	ip -n bench-prof link set lo up
	ip -n bench-prof addr add 203.0.113.10/32 dev lo
	ip netns exec bench-prof iptables -t nat -A OUTPUT -p tcp -d 203.0.113.10 --dport 443 \
		-m mark ! --mark 0x1337 -j REDIRECT --to-ports 18443
	benchtime=3s
	[[ $quick == 1 ]] && benchtime=1s
	: >"$gobench"
	prof=$out/prof-$ts
	mkdir -p "$prof"
	for b in 'Decide' 'AllowlistMemory' 'KeepAlive/egress' 'KeepAlive/direct' 'NewConn/egress' 'NewConn/direct' 'Download/egress' 'Download/direct' 'Upload'; do
		name=${b//\//-}
		ip netns exec bench-prof env PANOBENCH_PROF=1 "$bin/egressbench.test" -test.run '^$' -test.bench "^Benchmark$b\$" \
			-test.benchtime "$benchtime" -test.benchmem \
			-test.cpuprofile "$prof/$name.cpu" -test.memprofile "$prof/$name.mem" | tee -a "$gobench" | grep '^Benchmark' || true
	done
	for name in KeepAlive-egress NewConn-egress Download-egress Upload; do
		{
			echo "== $name: CPU (top 25, cumulative) =="
			go tool pprof -top -cum -nodecount=25 "$bin/egressbench.test" "$prof/$name.cpu" 2>/dev/null | tail -n +6
			echo "== $name: CPU (top 25, flat) =="
			go tool pprof -top -nodecount=25 "$bin/egressbench.test" "$prof/$name.cpu" 2>/dev/null | tail -n +6
			echo "== $name: allocated space (top 20) =="
			go tool pprof -sample_index=alloc_space -top -nodecount=20 "$bin/egressbench.test" "$prof/$name.mem" 2>/dev/null | tail -n +6
		} >"$prof/$name-top.txt"
	done
	echo "bench: profiles and their top entries in $prof/"
	ip netns delete bench-prof
fi

# ---- the side-by-side run ----
args=(run -panopticon "$bin/panopticon" -out "$out")
[[ -s $gobench ]] && args+=(-gobench "$gobench")
[[ -n $baseline ]] && args+=(-baseline "$baseline")
[[ -n ${BENCH_SUBJECTS:-} ]] && args+=(-subjects "$BENCH_SUBJECTS")
[[ -n ${BENCH_PHASES:-} ]] && args+=(-phases "$BENCH_PHASES")
if [[ $quick == 1 ]]; then
	args+=(-quick)
elif [[ -z ${BENCH_SUBJECTS:-}${BENCH_PHASES:-}${BENCH_BASELINE:-} ]]; then
	args+=(-readme bench/README.md) # only a complete full run replaces the published table
fi
ulimit -n "$(ulimit -Hn)"
"$bin/panobench" "${args[@]}"

results=$(readlink -f "$out/latest.json")
/usr/bin/python3 bench/chart.py "$results" "$out/chart.png"
if [[ $quick != 1 && -z ${BENCH_SUBJECTS:-}${BENCH_PHASES:-}${BENCH_BASELINE:-} ]]; then
	cp "$out/chart.png" bench/chart.png
fi
echo "bench: done: $results, $out/chart.png"
