// Package filewatch keeps a configuration file's parsed value current, so
// that every file panopticon reloads (the allowlist, the inbound filter, the
// inbound certificate and key) is reloaded the same safe way.
//
// A File is opened once at start-up (stat, read, parse: an error there is a
// start-up error) and then watched by polling mtime, size and inode of every
// path (which also catches an editor replacing the file and kubelet's atomic
// ..data symlink swap). A change is loaded only once it has stayed put for
// one tick, so a file caught mid-write is not loaded half-written; the new
// value is parsed outside any lock and swapped in whole; a file that is
// missing or does not parse is reported once per file state while the last
// good value stays in force.
//
//	allow, err := filewatch.Open("allowlist", func() (*policy.Allowlist, error) {
//		return policy.ParseFile(path)
//	}, path)
//	go allow.Watch(ctx, time.Second, pol.Swap, logIt)
//	list := allow.Value() // the version in force
//
// Watcher is the polling underneath, for a caller that loads by itself.
// Non-goals: inotify (it misses changes behind symlinks and on some
// filesystems), parsing — the caller's parse function owns it.
package filewatch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"
)

// State is what a Watcher compares between ticks: the mtime, size, device
// and inode of each watched path ("" when one is missing). os.Stat follows
// symlinks, so a swapped link target shows up as another inode.
type State string

// Stat returns the state of paths.
func Stat(paths ...string) (State, error) {
	var b strings.Builder
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		dev, ino := fileID(fi)
		fmt.Fprintf(&b, "%d:%d:%d:%d;", fi.ModTime().UnixNano(), fi.Size(), dev, ino)
	}
	return State(b.String()), nil
}

// Watcher polls one file, or several read together. Set Current to the
// state the value in force was loaded from (see Stat) to skip the first
// load, or LoadAtStart to load at once.
type Watcher struct {
	Paths       []string
	Load        func() error // parse and swap in; an error keeps the last good value
	OnError     func(error)  // may be nil
	What        string       // names the file in errors, e.g. "allowlist"
	LoadAtStart bool
	Current     State

	started  bool
	settling bool  // pending is set
	pending  State // a changed state waiting to stay put for one tick
	failed   bool  // lastBad is set
	lastBad  State // the state the last reported failure was seen in
}

// Run polls every interval (<= 0 means one second) until ctx is done.
func (w *Watcher) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = time.Second
	}
	if w.LoadAtStart {
		w.Tick()
	}
	w.started = true
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.Tick()
		}
	}
}

// Tick checks the files once (Run calls it; tests may call it directly).
func (w *Watcher) Tick() {
	st, err := Stat(w.Paths...)
	switch {
	case err == nil && !w.failed && st == w.Current:
		w.settling = false
		return // unchanged
	case w.failed && st == w.lastBad:
		return // already reported; wait for the file to change
	case (w.started || !w.LoadAtStart) && !(w.settling && st == w.pending):
		w.pending, w.settling = st, true
		return // changed since the last tick: let the writer finish
	}
	w.started, w.settling = true, false
	if err == nil {
		err = w.Load()
	} else if errors.Is(err, fs.ErrNotExist) {
		what := w.What
		if what == "" {
			what = "file"
		}
		err = &fs.PathError{Op: "watching " + what, Path: strings.Join(w.Paths, ", "), Err: errors.New("file is missing; keeping the last good version until it is back")}
	}
	if err != nil {
		w.failed, w.lastBad = true, st
		if w.OnError != nil {
			w.OnError(err)
		}
		return
	}
	w.Current, w.failed = st, false
}
