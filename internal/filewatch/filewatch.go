// Package filewatch notices when a configuration file changes and reloads
// it safely: by polling mtime, size and inode (which also catches an editor
// replacing the file and kubelet's atomic ..data symlink swap), loading a
// change only once it has stayed put for one tick (so a file caught
// mid-write is not loaded half-written), and reporting a failure once per
// file state while the last good value stays in force.
//
//	w := &filewatch.Watcher{Path: path, Load: reload, OnError: logIt}
//	go w.Run(ctx, time.Second)
//
// Load parses and swaps in the new value; an error keeps the old one.
// Non-goals: inotify (it misses changes behind symlinks and on some
// filesystems), parsing, locking — Load owns those.
package filewatch

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"time"
)

// State is what a Watcher compares between ticks. os.Stat follows symlinks,
// so a swapped link target shows up as another inode.
type State struct {
	exists bool
	mtime  int64 // UnixNano
	size   int64
	dev    uint64
	ino    uint64
}

// Stat returns the state of path.
func Stat(path string) (State, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return State{}, err
	}
	dev, ino := fileID(fi)
	return State{exists: true, mtime: fi.ModTime().UnixNano(), size: fi.Size(), dev: dev, ino: ino}, nil
}

// StatAll combines the states of several files (a certificate and its key).
func StatAll(paths ...string) ([]State, error) {
	out := make([]State, 0, len(paths))
	for _, p := range paths {
		st, err := Stat(p)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// Watcher polls one file. Set Current to the state the value in force was
// loaded from (see Stat) to skip the first load, or LoadAtStart to load at
// once.
type Watcher struct {
	Path        string
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

// Tick checks the file once (Run calls it; tests may call it directly).
func (w *Watcher) Tick() {
	st, err := Stat(w.Path)
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
		err = &fs.PathError{Op: "watching " + what, Path: w.Path, Err: errors.New("file is missing; keeping the last good version until it is back")}
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
