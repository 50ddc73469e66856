package firewall

import (
	"errors"
	"fmt"
	"strings"

	"github.com/coreos/go-iptables/iptables"
)

// Runner is the subset of *iptables.IPTables that Apply and Check use (and the tests, to remove a plan again).
type Runner interface {
	ChainExists(table, chain string) (bool, error)
	NewChain(table, chain string) error
	List(table, chain string) ([]string, error)
	Exists(table, chain string, rulespec ...string) (bool, error)
	Insert(table, chain string, pos int, rulespec ...string) error
	DeleteById(table, chain string, id int) error
	DeleteIfExists(table, chain string, rulespec ...string) error
	ClearAndDeleteChain(table, chain string) error
}

var _ Runner = (*iptables.IPTables)(nil)

// New returns a Runner that execs iptables (IPv4) or ip6tables (IPv6).
// It fails when the binary is missing from PATH.
func New(f Family) (Runner, error) {
	proto := iptables.ProtocolIPv4
	if f == IPv6 {
		proto = iptables.ProtocolIPv6
	}
	r, err := iptables.New(iptables.IPFamily(proto), iptables.Timeout(10))
	if err != nil {
		return nil, fmt.Errorf("firewall: opening %s iptables: %w", f, err)
	}
	return r, nil
}

// Apply installs p idempotently: after it returns nil, each of our chains
// holds exactly p's rules in order, and each built-in chain holds one jump to
// ours (inserted at position 1 only when absent). Foreign chains and rules are
// never touched.
//
// A chain that already exists is not flushed first, because on a restart the
// jump is live and a flush would open the namespace for a moment. Instead the
// new rules are inserted at the top and the old ones (now behind the new
// final REJECT/DROP) are deleted from the bottom. With an unchanged Spec every
// intermediate state behaves exactly like the final one.
func Apply(r Runner, p Plan) error {
	for _, c := range p.Chains {
		if err := applyChain(r, c, rulesOf(p, c)); err != nil {
			return fmt.Errorf("firewall: applying %s %s/%s: %w", p.Family, c.Table, c.Name, err)
		}
	}
	for _, j := range p.Jumps {
		ok, err := r.Exists(j.Table, j.Chain, j.Args...)
		if err != nil {
			return fmt.Errorf("firewall: checking %s jump %s/%s: %w", p.Family, j.Table, j, err)
		}
		if ok {
			continue
		}
		if err := r.Insert(j.Table, j.Chain, 1, j.Args...); err != nil {
			return fmt.Errorf("firewall: inserting %s jump %s/%s: %w", p.Family, j.Table, j, err)
		}
	}
	return nil
}

func applyChain(r Runner, c ChainRef, rules []Rule) error {
	exists, err := r.ChainExists(c.Table, c.Name)
	if err != nil {
		return fmt.Errorf("checking chain: %w", err)
	}
	old := 0
	if exists {
		if old, err = countRules(r, c); err != nil {
			return err
		}
	} else if err := r.NewChain(c.Table, c.Name); err != nil {
		return fmt.Errorf("creating chain: %w", err)
	}
	for i, rule := range rules {
		if err := r.Insert(c.Table, c.Name, i+1, rule.Args...); err != nil {
			return fmt.Errorf("inserting rule %d %q: %w", i+1, strings.Join(rule.Args, " "), err)
		}
	}
	for range old {
		// Old rules follow the new ones; delete from the end of the chain.
		if err := r.DeleteById(c.Table, c.Name, len(rules)+1); err != nil {
			return fmt.Errorf("deleting a previous rule: %w", err)
		}
	}
	return nil
}

// countRules counts the rules in chain c ("-A" lines of iptables -S).
func countRules(r Runner, c ChainRef) (int, error) {
	lines, err := r.List(c.Table, c.Name)
	if err != nil {
		return 0, fmt.Errorf("listing chain: %w", err)
	}
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, "-A ") {
			n++
		}
	}
	return n, nil
}

func rulesOf(p Plan, c ChainRef) []Rule {
	var out []Rule
	for _, r := range p.Rules {
		if r.Table == c.Table && r.Chain == c.Name {
			out = append(out, r)
		}
	}
	return out
}

// Check returns nil when every chain, rule and jump of p is present and our
// chains hold no extra rules. Otherwise the error names everything missing.
// It cannot see rule order (iptables -C does not report positions); Apply
// establishes order.
func Check(r Runner, p Plan) error {
	var errs []error
	missing := map[ChainRef]bool{}
	for _, c := range p.Chains {
		ok, err := r.ChainExists(c.Table, c.Name)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("firewall: checking %s chain %s/%s: %w", p.Family, c.Table, c.Name, err))
			missing[c] = true
		case !ok:
			errs = append(errs, fmt.Errorf("firewall: %s chain %s/%s is missing", p.Family, c.Table, c.Name))
			missing[c] = true
		}
	}
	for _, c := range p.Chains {
		if missing[c] {
			continue
		}
		want := rulesOf(p, c)
		for _, rule := range want {
			errs = appendIfMissing(errs, r, p.Family, rule, "rule")
		}
		n, err := countRules(r, c)
		if err != nil {
			errs = append(errs, fmt.Errorf("firewall: counting %s rules in %s/%s: %w", p.Family, c.Table, c.Name, err))
		} else if n != len(want) {
			errs = append(errs, fmt.Errorf("firewall: %s chain %s/%s has %d rules, want %d", p.Family, c.Table, c.Name, n, len(want)))
		}
	}
	for _, j := range p.Jumps {
		if target := jumpTarget(j); missing[ChainRef{j.Table, target}] {
			errs = append(errs, fmt.Errorf("firewall: %s jump %s/%s is missing", p.Family, j.Table, j))
			continue
		}
		errs = appendIfMissing(errs, r, p.Family, j, "jump")
	}
	return errors.Join(errs...)
}

func appendIfMissing(errs []error, r Runner, f Family, rule Rule, what string) []error {
	ok, err := r.Exists(rule.Table, rule.Chain, rule.Args...)
	switch {
	case err != nil:
		return append(errs, fmt.Errorf("firewall: checking %s %s %s/%s: %w", f, what, rule.Table, rule, err))
	case !ok:
		return append(errs, fmt.Errorf("firewall: %s %s %s/%s is missing", f, what, rule.Table, rule))
	}
	return errs
}

// jumpTarget returns the chain a jump rule ("-j NAME") points to.
func jumpTarget(j Rule) string {
	for i := 0; i+1 < len(j.Args); i++ {
		if j.Args[i] == "-j" {
			return j.Args[i+1]
		}
	}
	return ""
}
