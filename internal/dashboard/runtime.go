package dashboard

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/panopticon-dev/panopticon/internal/atomicfile"
	"github.com/panopticon-dev/panopticon/internal/policy"
)

// RuntimeFileName is the runtime allowlist inside the state directory.
const RuntimeFileName = "runtime-allowlist.txt"

const runtimeHeader = "# Runtime allowlist: entries added from the panopticon dashboard.\n" +
	"# They apply beside ALLOWLIST_FILE and survive restarts. Same syntax as allowlist.txt.\n"

// RuntimeList is the runtime allowlist: entries added from the dashboard,
// persisted in one file and installed with policy.SetRuntime. Safe for
// concurrent use.
type RuntimeList struct {
	path   string
	policy *policy.Policy

	mu       sync.Mutex
	patterns []string // canonical (policy.Entry.String), in the order added; guarded by mu
}

// OpenRuntimeList reads path (a missing file is an empty list) and installs
// it in p. A file that does not parse is an error naming the file and line.
func OpenRuntimeList(path string, p *policy.Policy) (*RuntimeList, error) {
	r := &RuntimeList{path: path, policy: p}
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("reading runtime allowlist: %w", err)
	}
	list, err := policy.Parse(data, path)
	if err != nil {
		return nil, fmt.Errorf("runtime allowlist (fix or delete the file): %w", err)
	}
	for _, e := range list.Entries() {
		if !slices.Contains(r.patterns, e.String()) {
			r.patterns = append(r.patterns, e.String())
		}
	}
	p.SetRuntime(list)
	return r, nil
}

// Path returns the file the list is kept in.
func (r *RuntimeList) Path() string { return r.path }

// Patterns returns the entries, in the order added.
func (r *RuntimeList) Patterns() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.patterns)
}

// Canonical validates one allowlist pattern and returns it as the allowlist
// writes it ("Example.COM." → "example.com").
func Canonical(pattern string) (string, error) {
	pattern = strings.TrimSpace(pattern)
	if pattern == "" || strings.ContainsAny(pattern, "\n#") {
		return "", fmt.Errorf("%q: want one host name pattern, e.g. \"example.com\" or \"*.example.com:8443\"", pattern)
	}
	list, err := policy.Parse([]byte(pattern), "pattern")
	if err != nil {
		return "", errors.New(strings.TrimPrefix(err.Error(), "pattern:1: "))
	}
	entries := list.Entries()
	if len(entries) != 1 {
		return "", fmt.Errorf("%q: want exactly one pattern", pattern)
	}
	return entries[0].String(), nil
}

// Add validates patterns, persists them and puts them in force at once. It
// returns the canonical forms of those that were new. Nothing changes when
// any pattern is invalid or the file cannot be written.
func (r *RuntimeList) Add(patterns ...string) ([]string, error) {
	var canon []string
	for _, p := range patterns {
		c, err := Canonical(p)
		if err != nil {
			return nil, err
		}
		canon = append(canon, c)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	next := slices.Clone(r.patterns)
	var added []string
	for _, c := range canon {
		if !slices.Contains(next, c) {
			next = append(next, c)
			added = append(added, c)
		}
	}
	if len(added) == 0 {
		return nil, nil
	}
	return added, r.commit(next)
}

// Remove deletes pattern from the list; it reports whether it was there.
func (r *RuntimeList) Remove(pattern string) (bool, error) {
	c, err := Canonical(pattern)
	if err != nil {
		return false, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	i := slices.Index(r.patterns, c)
	if i < 0 {
		return false, nil
	}
	return true, r.commit(slices.Delete(slices.Clone(r.patterns), i, i+1))
}

// commit writes next and installs it; r.mu is held.
func (r *RuntimeList) commit(next []string) error {
	var buf bytes.Buffer
	buf.WriteString(runtimeHeader)
	for _, p := range next {
		buf.WriteString(p + "\n")
	}
	list, err := policy.Parse(buf.Bytes(), r.path)
	if err != nil {
		return fmt.Errorf("runtime allowlist: %w", err) // cannot happen: every pattern was validated
	}
	if err := atomicfile.Replace(r.path, buf.Bytes(), 0o640); err != nil {
		return fmt.Errorf("saving runtime allowlist: %w", err)
	}
	r.patterns = next
	r.policy.SetRuntime(list)
	return nil
}
