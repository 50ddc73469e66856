#!/bin/sh
# Checks what panopticon itself cannot explain well, then hands over. No firewall
# logic here: the binary installs, checks and owns every rule.
set -eu

if [ "${1:-run}" = run ]; then
	# CAP_NET_ADMIN is bit 12 of the effective capability set.
	capeff=$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status)
	if [ $(( (0x${capeff:-0} >> 12) & 1 )) -ne 1 ]; then
		cat >&2 <<-'MSG'
		panopticon needs the NET_ADMIN capability to install its firewall, and this
		container does not have it. Add to the proxy service in docker-compose.yml:
		    cap_add: [NET_ADMIN]
		or run: docker run --cap-add NET_ADMIN ...
		MSG
		exit 64
	fi
	if ! iptables -w 5 -L -n >/dev/null 2>&1; then
		echo "panopticon: 'iptables -L' fails in this container: $(iptables -w 5 -L -n 2>&1 | head -n 3)" >&2
		echo "panopticon: check that the kernel has iptables support and that the image's backend (IPTABLES_BACKEND build argument, now: $(iptables -V)) matches the host." >&2
		exit 64
	fi
fi

exec /usr/local/bin/panopticon "$@"
