package filewatch

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// File is a configuration file (or files read together, such as a
// certificate and its key) and the value parsed from it, kept current.
// Safe for concurrent use; Watch runs at most once.
type File[T any] struct {
	paths    []string
	what     string
	parse    func() (T, error)
	state    State // what the value in force was read from
	val      atomic.Pointer[T]
	reloads  atomic.Uint64
	failures atomic.Uint64
}

// Open stats paths, then parses them with parse (which reads them): the
// value in force until a change is loaded. what names the file in errors.
// Stat comes first, so a write between the two is seen as a change and
// loaded again, never missed.
func Open[T any](what string, parse func() (T, error), paths ...string) (*File[T], error) {
	st, err := Stat(paths...)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	v, err := parse()
	if err != nil {
		return nil, err
	}
	f := &File[T]{paths: paths, what: what, parse: parse, state: st}
	f.val.Store(&v)
	return f, nil
}

// Static is a File that is not read from disk and never changes (built-in
// defaults, tests).
func Static[T any](v T) *File[T] {
	f := &File[T]{}
	f.val.Store(&v)
	return f
}

// Value is the version in force: the last one that parsed.
func (f *File[T]) Value() T { return *f.val.Load() }

// Paths are the files behind the value (none for a Static one).
func (f *File[T]) Paths() []string { return f.paths }

// Reloads counts the changes loaded since Open; Failures the changes that
// could not be (each file state once).
func (f *File[T]) Reloads() uint64  { return f.reloads.Load() }
func (f *File[T]) Failures() uint64 { return f.failures.Load() }

// Watch polls every interval (<= 0: one second) until ctx is done, swaps in
// each change that parses and then calls onReload with it; a change that is
// missing or does not parse calls onError once per file state. Either
// callback may be nil. A Static file returns at once.
func (f *File[T]) Watch(ctx context.Context, interval time.Duration, onReload func(T), onError func(error)) {
	if len(f.paths) == 0 {
		return
	}
	f.watcher(onReload, onError).Run(ctx, interval)
}

func (f *File[T]) watcher(onReload func(T), onError func(error)) *Watcher {
	return &Watcher{
		Paths:   f.paths,
		What:    f.what,
		Current: f.state,
		OnError: func(err error) {
			f.failures.Add(1)
			if onError != nil {
				onError(err)
			}
		},
		Load: func() error {
			v, err := f.parse()
			if err != nil {
				return err
			}
			f.val.Store(&v)
			f.reloads.Add(1)
			if onReload != nil {
				onReload(v)
			}
			return nil
		},
	}
}
