package inbound

import (
	"context"
	"fmt"
	"time"

	"github.com/panopticon-dev/panopticon/internal/filewatch"
)

// FilterOff is the INBOUND_FILTER_FILE value that turns filtering off.
const FilterOff = "off"

// Filter holds the rules in force and reloads them from their file. A nil
// *Filter filters nothing.
type Filter struct {
	file *filewatch.File[*Rules]
}

// NewFilter loads the rules named by spec (INBOUND_FILTER_FILE): "" means
// the built-in starter rules, FilterOff means no filtering (a nil Filter),
// anything else is a rule file.
func NewFilter(spec string) (*Filter, error) {
	switch spec {
	case FilterOff:
		return nil, nil
	case "":
		rs, err := ParseRules(StarterSource, StarterRules)
		if err != nil {
			return nil, fmt.Errorf("built-in starter rules: %w", err)
		}
		return NewStaticFilter(rs), nil
	}
	f, err := filewatch.Open("inbound filter", func() (*Rules, error) { return ParseRulesFile(spec) }, spec)
	if err != nil {
		return nil, err
	}
	return &Filter{file: f}, nil
}

// NewStaticFilter serves fixed rules (for tests and embedding).
func NewStaticFilter(rs *Rules) *Filter {
	return &Filter{file: filewatch.Static(rs)}
}

// Rules returns the rules in force; nil when filtering is off.
func (f *Filter) Rules() *Rules {
	if f == nil {
		return nil
	}
	return f.file.Value()
}

// Path is the rule file, or "" for built-in or static rules.
func (f *Filter) Path() string {
	if f == nil || len(f.file.Paths()) == 0 {
		return ""
	}
	return f.file.Paths()[0]
}

// Watch keeps the rules current until ctx is done (filewatch.File.Watch):
// a change is swapped in whole; a file that is missing or has a bad line
// keeps the last good rules and calls onError once per file state.
// Built-in, static and nil filters return at once. Either callback may be nil.
func (f *Filter) Watch(ctx context.Context, interval time.Duration, onReload func(*Rules), onError func(error)) {
	if f == nil {
		return
	}
	f.file.Watch(ctx, interval, onReload, onError)
}
