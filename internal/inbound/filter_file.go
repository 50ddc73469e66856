package inbound

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/panopticon-dev/panopticon/internal/filewatch"
)

// FilterOff is the INBOUND_FILTER_FILE value that turns filtering off.
const FilterOff = "off"

// Filter holds the rules in force and reloads them from their file. A nil
// *Filter filters nothing.
type Filter struct {
	path  string // "" for the built-in starter rules
	state filewatch.State
	rules atomic.Pointer[Rules]
}

// NewFilter loads the rules named by spec (INBOUND_FILTER_FILE): "" means
// the built-in starter rules, FilterOff means no filtering (a nil Filter),
// anything else is a rule file.
func NewFilter(spec string) (*Filter, error) {
	f := &Filter{}
	switch spec {
	case FilterOff:
		return nil, nil
	case "":
		rs, err := ParseRules(StarterSource, StarterRules)
		if err != nil {
			return nil, fmt.Errorf("built-in starter rules: %w", err)
		}
		f.rules.Store(rs)
		return f, nil
	}
	f.path = spec
	// Stat before reading: a write in between is then seen as a change and
	// loaded again by Watch, never missed.
	st, err := filewatch.Stat(spec)
	if err != nil {
		return nil, fmt.Errorf("reading inbound filter: %w", err)
	}
	rs, err := ParseRulesFile(spec)
	if err != nil {
		return nil, err
	}
	f.state = st
	f.rules.Store(rs)
	return f, nil
}

// NewStaticFilter serves fixed rules (for tests and embedding).
func NewStaticFilter(rs *Rules) *Filter {
	f := &Filter{}
	f.rules.Store(rs)
	return f
}

// Rules returns the rules in force; nil when filtering is off.
func (f *Filter) Rules() *Rules {
	if f == nil {
		return nil
	}
	return f.rules.Load()
}

// Path is the rule file, or "" for built-in or static rules.
func (f *Filter) Path() string {
	if f == nil {
		return ""
	}
	return f.path
}

// Watch polls the rule file every interval until ctx is done. A change is
// parsed outside any lock and swapped in whole; a file that is missing or
// has a bad line keeps the last good rules and calls onError (once per file
// state). Built-in, static and nil filters return at once. Either callback
// may be nil.
func (f *Filter) Watch(ctx context.Context, interval time.Duration, onReload func(*Rules), onError func(error)) {
	if f == nil || f.path == "" {
		return
	}
	w := &filewatch.Watcher{Path: f.path, What: "inbound filter", Current: f.state, OnError: onError}
	w.Load = func() error {
		rs, err := ParseRulesFile(f.path)
		if err != nil {
			return err
		}
		f.rules.Store(rs)
		if onReload != nil {
			onReload(rs)
		}
		return nil
	}
	w.Run(ctx, interval)
}
