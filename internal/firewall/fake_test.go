package firewall

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
)

// Fake is an in-memory Runner for tests. It keeps the built-in chains of
// the filter and nat tables, compares rules by their exact arguments (it does
// not normalise spellings the way iptables -C does) and fails where iptables
// would: a missing chain, a duplicate chain, a position out of range, a jump
// to a chain that does not exist, deleting a chain that is still referenced.
type Fake struct {
	mu     sync.Mutex
	tables map[string]map[string]*fakeChain
}

type fakeChain struct {
	builtin bool
	rules   [][]string
}

var _ Runner = (*Fake)(nil)

// NewFake returns a Fake holding only the empty built-in chains.
func NewFake() *Fake {
	f := &Fake{tables: map[string]map[string]*fakeChain{}}
	for table, chains := range map[string][]string{
		"filter": {"INPUT", "FORWARD", "OUTPUT"},
		"nat":    {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
		"mangle": {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
		"raw":    {"PREROUTING", "OUTPUT"},
	} {
		f.tables[table] = map[string]*fakeChain{}
		for _, c := range chains {
			f.tables[table][c] = &fakeChain{builtin: true}
		}
	}
	return f
}

func (f *Fake) chain(table, chain string) (*fakeChain, error) {
	c, ok := f.tables[table][chain]
	if !ok {
		return nil, fmt.Errorf("fake iptables: chain %s/%s does not exist", table, chain)
	}
	return c, nil
}

// ChainExists reports whether table/chain exists.
func (f *Fake) ChainExists(table, chain string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.tables[table]; !ok {
		return false, fmt.Errorf("fake iptables: no table %q", table)
	}
	_, ok := f.tables[table][chain]
	return ok, nil
}

// NewChain creates an empty user chain; it fails if it exists.
func (f *Fake) NewChain(table, chain string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.tables[table]
	if !ok {
		return fmt.Errorf("fake iptables: no table %q", table)
	}
	if _, ok := t[chain]; ok {
		return fmt.Errorf("fake iptables: chain %s/%s already exists", table, chain)
	}
	t[chain] = &fakeChain{}
	return nil
}

// List returns the chain like iptables -S CHAIN.
func (f *Fake) List(table, chain string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.chain(table, chain)
	if err != nil {
		return nil, err
	}
	head := "-N " + chain
	if c.builtin {
		head = "-P " + chain + " ACCEPT"
	}
	out := []string{head}
	for _, r := range c.rules {
		out = append(out, "-A "+chain+" "+strings.Join(r, " "))
	}
	return out, nil
}

// Exists reports whether the exact rule is in table/chain.
func (f *Fake) Exists(table, chain string, rulespec ...string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.chain(table, chain)
	if err != nil {
		return false, err
	}
	if err := f.checkTarget(table, rulespec); err != nil {
		return false, err
	}
	return c.index(rulespec) >= 0, nil
}

// Insert puts the rule at 1-based position pos.
func (f *Fake) Insert(table, chain string, pos int, rulespec ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.chain(table, chain)
	if err != nil {
		return err
	}
	if pos < 1 || pos > len(c.rules)+1 {
		return fmt.Errorf("fake iptables: index %d out of range in %s/%s", pos, table, chain)
	}
	if err := f.checkTarget(table, rulespec); err != nil {
		return err
	}
	c.rules = slices.Insert(c.rules, pos-1, slices.Clone(rulespec))
	return nil
}

// Append adds the rule at the end of table/chain (for setting up tests).
func (f *Fake) Append(table, chain string, rulespec ...string) error {
	f.mu.Lock()
	n := -1
	if c, ok := f.tables[table][chain]; ok {
		n = len(c.rules)
	}
	f.mu.Unlock()
	return f.Insert(table, chain, n+1, rulespec...)
}

// DeleteById deletes the rule at 1-based position id.
func (f *Fake) DeleteById(table, chain string, id int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.chain(table, chain)
	if err != nil {
		return err
	}
	if id < 1 || id > len(c.rules) {
		return fmt.Errorf("fake iptables: index %d out of range in %s/%s", id, table, chain)
	}
	c.rules = slices.Delete(c.rules, id-1, id)
	return nil
}

// DeleteIfExists deletes the first copy of the rule, if there is one.
func (f *Fake) DeleteIfExists(table, chain string, rulespec ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.chain(table, chain)
	if err != nil {
		return err
	}
	if i := c.index(rulespec); i >= 0 {
		c.rules = slices.Delete(c.rules, i, i+1)
	}
	return nil
}

// ClearAndDeleteChain removes a user chain; a missing chain is not an error.
func (f *Fake) ClearAndDeleteChain(table, chain string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.tables[table][chain]
	if !ok {
		return nil
	}
	if c.builtin {
		return fmt.Errorf("fake iptables: cannot delete built-in chain %s/%s", table, chain)
	}
	c.rules = nil // like go-iptables: flush (-F) succeeds, then -X may fail
	for name, other := range f.tables[table] {
		for _, r := range other.rules {
			if target(r) == chain {
				return fmt.Errorf("fake iptables: chain %s/%s is referenced from %s", table, chain, name)
			}
		}
	}
	delete(f.tables[table], chain)
	return nil
}

// Dump renders every table like iptables-save (sorted chains, no counters),
// so tests can compare whole states.
func (f *Fake) Dump() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for _, table := range slices.Sorted(maps.Keys(f.tables)) {
		fmt.Fprintf(&b, "*%s\n", table)
		names := slices.Sorted(maps.Keys(f.tables[table]))
		for _, name := range names {
			fmt.Fprintf(&b, ":%s\n", name)
		}
		for _, name := range names {
			for _, r := range f.tables[table][name].rules {
				fmt.Fprintf(&b, "-A %s %s\n", name, strings.Join(r, " "))
			}
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

func (f *Fake) checkTarget(table string, rulespec []string) error {
	t := target(rulespec)
	if t == "" || builtinTarget(t) {
		return nil
	}
	if _, ok := f.tables[table][t]; !ok {
		return fmt.Errorf("fake iptables: jump target %s/%s does not exist", table, t)
	}
	return nil
}

func builtinTarget(t string) bool {
	switch t {
	case "ACCEPT", "DROP", "RETURN", "REJECT", "REDIRECT", "DNAT", "SNAT", "MASQUERADE", "MARK", "LOG", "CT":
		return true
	}
	return false
}

func (c *fakeChain) index(rulespec []string) int {
	return slices.IndexFunc(c.rules, func(r []string) bool { return slices.Equal(r, rulespec) })
}

func target(rulespec []string) string {
	return jumpTarget(Rule{Args: rulespec})
}
