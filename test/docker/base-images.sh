#!/usr/bin/env bash
# base-images.sh — create the base images the Dockerfile names, without a registry.
#
# No container registry is reachable from this machine, so `FROM debian:bookworm-slim`
# and `FROM golang:1.26-bookworm` would fail. This script builds both locally, under
# exactly those names, and does nothing when they already exist (pulled or built):
#
#   debian:bookworm-slim  = debootstrap --variant=minbase bookworm, from the host's
#                           configured Debian mirror, `docker import`ed
#   golang:1.26-bookworm  = that rootfs + ca-certificates + the host's /usr/local/go
#
# The debootstrap results are cached as tarballs in $CACHE_DIR, so a rerun after
# `docker image rm` takes seconds, and a rerun with both images present takes ~0.1 s.
#
# Environment:
#   CACHE_DIR       (default /var/cache/panopticon-test)
#   DEBIAN_MIRROR   (default: read from /etc/apt/sources.list{,.d/*})
#   HOST_GOROOT     (default /usr/local/go)
#   FORCE=1         rebuild both images even if present (keeps the tarball cache)
set -euo pipefail

CACHE_DIR=${CACHE_DIR:-/var/cache/panopticon-test}
HOST_GOROOT=${HOST_GOROOT:-/usr/local/go}
SUITE=bookworm
BASE_IMAGE=debian:bookworm-slim
GO_IMAGE=golang:1.26-bookworm
LABEL=dev.panopticon.local-base=1

log() { printf 'base-images: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

have_image() { [ "${FORCE:-0}" != 1 ] && docker image inspect "$1" >/dev/null 2>&1; }

# debian_mirror prints the first Debian mirror serving $SUITE in the apt configuration
# (deb822 *.sources first, then one-line *.list), or deb.debian.org.
debian_mirror() {
	if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
	local f m
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		m=$(awk -v suite="$SUITE" 'BEGIN { RS = ""; FS = "\n" }
			{
				types = ""; uris = ""; suites = ""; enabled = "yes"
				for (i = 1; i <= NF; i++) {
					if ($i ~ /^Types:/)   { types = $i }
					if ($i ~ /^URIs:/)    { uris = $i; sub(/^URIs:[ \t]*/, "", uris) }
					if ($i ~ /^Suites:/)  { suites = " " $i " " }
					if ($i ~ /^Enabled:[ \t]*no/) { enabled = "no" }
				}
				if (enabled == "yes" && types ~ /[ \t]deb([ \t]|$)/ && suites ~ ("[ \t]" suite "[ \t]")) {
					split(uris, u, /[ \t]+/); print u[1]; exit
				}
			}' "$f")
		if [ -n "$m" ]; then echo "$m"; return; fi
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		m=$(sed -E 's/\[[^]]*\]//' "$f" | awk -v suite="$SUITE" '$1 == "deb" && $3 == suite { print $2; exit }')
		if [ -n "$m" ]; then echo "$m"; return; fi
	done
	echo http://deb.debian.org/debian
}

# make_rootfs_tarballs debootstraps once and writes two cached tarballs:
#   bookworm-minbase.tar  the plain minbase system (→ debian:bookworm-slim)
#   bookworm-go.tar       the same + ca-certificates, for the Go toolchain image
#                         (go mod download needs TLS roots).
make_rootfs_tarballs() {
	local mirror tmp root
	command -v debootstrap >/dev/null || {
		log "installing debootstrap"
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
	}
	mirror=$(debian_mirror)
	tmp=$(mktemp -d "$CACHE_DIR/tmp.XXXXXX")
	root=$tmp/root
	# shellcheck disable=SC2064
	trap "rm -rf '$tmp'" RETURN
	log "debootstrap --variant=minbase $SUITE from $mirror"
	debootstrap --variant=minbase "$SUITE" "$root" "$mirror" >"$tmp/debootstrap.log" 2>&1 ||
		{ tail -20 "$tmp/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
	slim_clean "$root"
	tar --numeric-owner -C "$root" -cf "$tmp/minbase.tar" .

	log "adding ca-certificates for the Go image (chroot apt-get)"
	cp /etc/resolv.conf "$root/etc/resolv.conf"
	chroot "$root" /bin/sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates >/dev/null' ||
		die "installing ca-certificates in the Go rootfs failed"
	: >"$root/etc/resolv.conf"
	slim_clean "$root"
	tar --numeric-owner -C "$root" -cf "$tmp/go.tar" .

	mv "$tmp/minbase.tar" "$CACHE_DIR/bookworm-minbase.tar"
	mv "$tmp/go.tar" "$CACHE_DIR/bookworm-go.tar"
}

# slim_clean removes what debian:*-slim images also leave out: apt caches, docs.
slim_clean() {
	local root=$1
	chroot "$root" apt-get clean
	rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
		"$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
		"$root"/var/log/*.log "$root"/var/log/apt/* "$root"/tmp/*
	: >"$root/etc/hostname"
}

main() {
	local start=$SECONDS
	command -v docker >/dev/null || die "docker not found"
	if have_image "$BASE_IMAGE" && have_image "$GO_IMAGE"; then
		log "$BASE_IMAGE and $GO_IMAGE present"
		return 0
	fi
	[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot)"
	[ -x "$HOST_GOROOT/bin/go" ] || die "no Go toolchain at $HOST_GOROOT"
	mkdir -p "$CACHE_DIR"

	exec 9>"$CACHE_DIR/.lock"
	flock 9 # one builder at a time; a second caller waits and then finds the images
	if have_image "$BASE_IMAGE" && have_image "$GO_IMAGE"; then return 0; fi

	if [ ! -s "$CACHE_DIR/bookworm-minbase.tar" ] || [ ! -s "$CACHE_DIR/bookworm-go.tar" ]; then
		make_rootfs_tarballs
	else
		log "using cached rootfs tarballs in $CACHE_DIR"
	fi

	local path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
	if ! have_image "$BASE_IMAGE"; then
		log "importing $BASE_IMAGE"
		docker import --change "ENV PATH=$path" --change "LABEL $LABEL" --change 'CMD ["bash"]' \
			"$CACHE_DIR/bookworm-minbase.tar" "$BASE_IMAGE" >/dev/null
	fi
	if ! have_image "$GO_IMAGE"; then
		local gover
		gover=$("$HOST_GOROOT/bin/go" env GOVERSION)
		case $gover in go1.26*) ;; *) die "$HOST_GOROOT is $gover, $GO_IMAGE needs go1.26.x" ;; esac
		log "importing $GO_IMAGE ($gover from $HOST_GOROOT)"
		local gotar=$CACHE_DIR/golang-$gover-bookworm.tar
		if [ ! -s "$gotar" ]; then
			# The cached rootfs plus the host's Go tree as usr/local/go, built aside and
			# renamed, so an interrupted run never leaves a half tarball (or image) behind.
			cp "$CACHE_DIR/bookworm-go.tar" "$gotar.tmp"
			tar --numeric-owner --owner=0 --group=0 -rf "$gotar.tmp" \
				-C "$(dirname "$HOST_GOROOT")" \
				--transform "s,^$(basename "$HOST_GOROOT"),usr/local/go," "$(basename "$HOST_GOROOT")"
			mv "$gotar.tmp" "$gotar"
		fi
		docker import \
			--change "ENV PATH=/go/bin:/usr/local/go/bin:$path" \
			--change 'ENV GOPATH=/go' \
			--change "ENV GOLANG_VERSION=${gover#go}" \
			--change 'ENV GOTOOLCHAIN=local' \
			--change 'WORKDIR /go' \
			--change "LABEL $LABEL" \
			--change 'CMD ["bash"]' \
			"$gotar" "$GO_IMAGE" >/dev/null
	fi
	log "done in $((SECONDS - start))s"
}

main "$@"
