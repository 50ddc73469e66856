package policy

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"time"
)

// Watch polls path every interval (mtime, size, inode — which also catches an
// editor replacing the file and a kubelet ..data symlink swap) and, on change,
// parses it outside any lock and hands the result to onReload. A file that is
// missing or fails to parse calls onError and keeps the last good list in force.
// It returns when ctx is done.
//
// Watch loads the file once as soon as it starts, so a change made between
// the caller's own ParseFile and the start of Watch is never missed; expect
// one onReload (or onError) right away. After that, a change is loaded only
// once the file has stayed the same for one interval, so a file caught
// mid-write is not loaded half-written (a truncated name may still parse);
// it is retried on the next tick. A failure is reported once per file
// state, not on every tick. Either callback may be nil. An interval <= 0
// means one second.
func Watch(ctx context.Context, path string, interval time.Duration, onReload func(*Allowlist), onError func(error)) {
	if interval <= 0 {
		interval = time.Second
	}
	w := watcher{path: path, onReload: onReload, onError: onError}
	w.tick()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.tick()
		}
	}
}

// fileState is what Watch compares between ticks. os.Stat follows symlinks,
// so a swapped link target shows up as another inode.
type fileState struct {
	exists bool
	mtime  int64 // UnixNano
	size   int64
	dev    uint64
	ino    uint64
}

func statFile(path string) (fileState, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileState{}, err
	}
	dev, ino := fileID(fi)
	return fileState{exists: true, mtime: fi.ModTime().UnixNano(), size: fi.Size(), dev: dev, ino: ino}, nil
}

type watcher struct {
	path     string
	onReload func(*Allowlist)
	onError  func(error)

	started  bool      // the initial load has happened
	loaded   bool      // current is set
	current  fileState // the file behind the list in force
	settling bool      // pending is set
	pending  fileState // a changed state waiting to stay put for one tick
	failed   bool      // lastBad is set
	lastBad  fileState // the state the last reported failure was seen in
}

func (w *watcher) tick() {
	st, err := statFile(w.path)
	switch {
	case err == nil && w.loaded && st == w.current:
		w.settling = false
		return // unchanged
	case w.failed && st == w.lastBad:
		return // already reported; wait for the file to change
	case w.started && !(w.settling && st == w.pending):
		w.pending, w.settling = st, true
		return // changed since the last tick: let the writer finish
	}
	w.started, w.settling = true, false

	var list *Allowlist
	if err == nil {
		list, err = ParseFile(w.path)
	} else if errors.Is(err, fs.ErrNotExist) {
		err = &fs.PathError{Op: "watching allowlist", Path: w.path, Err: errors.New("file is missing; keeping the last good allowlist until it is back")}
	}
	if err != nil {
		w.failed, w.lastBad = true, st
		if w.onError != nil {
			w.onError(err)
		}
		return
	}
	w.loaded, w.current, w.failed = true, st, false
	if w.onReload != nil {
		w.onReload(list)
	}
}
