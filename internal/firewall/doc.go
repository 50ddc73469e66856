// Package firewall turns panopticon's port and identity settings into
// iptables rules (IPv4 and IPv6) and installs them idempotently in chains of
// its own, so that every packet the untrusted app sends off loopback is
// redirected to panopticon or rejected, and only panopticon's own sockets
// (uid ProxyUID *and* socket mark Mark) may leave the namespace.
//
// The rule set is computed by a pure function, [BuildPlan], whose output is
// golden-tested; [Apply] and [Check] carry a [Plan] out through a small
// [Runner] interface, implemented by go-iptables ([New]) and, in the tests,
// by an in-memory fake (which also removes a plan again).
//
//	spec := firewall.Spec{ProxyUID: 1337, Mark: 0x539, TransparentPort: 8080,
//		DNSPort: 5353, InboundPorts: []int{443, 12000, 8081}, DashboardPort: 8081}
//	if err := spec.Validate(); err != nil { ... }
//	for _, fam := range []firewall.Family{firewall.IPv4, firewall.IPv6} {
//		r, err := firewall.New(fam)
//		if err != nil { ... }
//		if err := firewall.Apply(r, firewall.BuildPlan(spec, fam)); err != nil { ... }
//	}
//
// Layout: nat PANOPTICON_NAT (jumped to from nat OUTPUT), filter
// PANOPTICON_OUT (from filter OUTPUT) and filter PANOPTICON_IN (from filter
// INPUT). Built-in chains only ever receive one jump each, inserted at
// position 1; nothing else in the namespace is flushed or edited, because
// Docker's embedded DNS lives in nat DOCKER_OUTPUT of the same namespace.
//
// Non-goals: atomic replacement (each rule is one iptables exec; see
// [Apply] for how a re-apply avoids an open window), nftables-native rules,
// and removing the firewall on exit — panopticon leaves it in place so the app
// stays offline when the proxy dies (fail closed).
package firewall
