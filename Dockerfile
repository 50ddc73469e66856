# syntax=docker/dockerfile:1
# Panopticon image (default target) and the demo agent image (target "agent").
#
#   docker build -t panopticon .
#   docker build --target agent -t panopticon-demo-agent .
#
# Build arguments:
#   VERSION           stamped into `panopticon version` (default: dev)
#   IPTABLES_BACKEND  nft (default) or legacy. Use the backend your host kernel uses:
#                     `iptables -V` on the host prints "(nf_tables)" or "(legacy)".
#                     Mixing them leaves two rule sets that do not see each other.
#   GOPROXY           Go module proxy for the build (default https://proxy.golang.org,direct);
#                     point it at a mirror when the public proxy is unreachable.
# Works with the classic builder and BuildKit alike (no RUN --mount).

ARG GO_IMAGE=golang:1.26-bookworm
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${GO_IMAGE} AS build
WORKDIR /src
ARG GOPROXY=https://proxy.golang.org,direct
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOPROXY=${GOPROXY}
# Dependencies first: this layer survives source edits.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# Static (CGO off: the privilege drop needs Go's all-thread setuid), trimmed, stamped.
RUN go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/panopticon ./cmd/panopticon \
 && go build -trimpath -ldflags "-s -w" -o /out/demo-agent ./cmd/demo-agent

FROM ${BASE_IMAGE} AS agent
# The stand-in for an AI agent: echo server plus curl/wget for trying egress by hand.
# Replace this service's image in docker-compose.yml with your agent's.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates curl wget \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 1000 --user-group --create-home --shell /bin/bash agent
COPY --from=build /out/demo-agent /usr/local/bin/demo-agent
USER 1000:1000
WORKDIR /home/agent
CMD ["demo-agent"]

FROM ${BASE_IMAGE} AS panopticon
ARG IPTABLES_BACKEND=nft
RUN case "${IPTABLES_BACKEND}" in nft|legacy) ;; \
      *) echo "IPTABLES_BACKEND=${IPTABLES_BACKEND}: want nft or legacy" >&2; exit 1 ;; esac \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iptables ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && update-alternatives --set iptables "/usr/sbin/iptables-${IPTABLES_BACKEND}" \
 && update-alternatives --set ip6tables "/usr/sbin/ip6tables-${IPTABLES_BACKEND}" \
 && iptables -V
COPY --from=build /out/panopticon /usr/local/bin/panopticon
COPY entrypoint.sh /entrypoint.sh
COPY allowlist.txt /etc/panopticon/allowlist.txt
# Starts as root (iptables needs NET_ADMIN); the binary drops itself to PROXY_UID
# (1337) once the firewall is in place and its listeners are open.
ENTRYPOINT ["/entrypoint.sh"]
CMD ["run"]
