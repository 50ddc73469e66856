package inbound

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"time"
)

// fileState is what a reload compares: mtime, size and identity. os.Stat
// follows symlinks, so a swapped link target shows up as another inode.
type fileState struct {
	mtime int64 // UnixNano
	size  int64
	dev   uint64
	ino   uint64
}

func statFile(path string) (fileState, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileState{}, err
	}
	dev, ino := fileID(fi)
	return fileState{mtime: fi.ModTime().UnixNano(), size: fi.Size(), dev: dev, ino: ino}, nil
}

// statAll combines the states of several files (a certificate and its key).
func statAll(paths ...string) ([]fileState, error) {
	out := make([]fileState, 0, len(paths))
	for _, p := range paths {
		st, err := statFile(p)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// poller polls a file and calls load once a change has stayed put for one
// tick, so a file caught mid-write is not loaded half-written. A failure is
// reported once per file state, not on every tick.
type poller struct {
	path    string
	load    func() error // parse and swap in; an error keeps the last good value
	onError func(error)

	current  fileState // the file behind the value in force
	settling bool
	pending  fileState
	failed   bool
	lastBad  fileState
}

func (p *poller) run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.tick()
		}
	}
}

func (p *poller) tick() {
	st, err := statFile(p.path)
	switch {
	case err == nil && !p.failed && st == p.current:
		p.settling = false
		return // unchanged
	case p.failed && st == p.lastBad:
		return // already reported; wait for the file to change
	case !(p.settling && st == p.pending):
		p.pending, p.settling = st, true
		return // changed since the last tick: let the writer finish
	}
	p.settling = false
	if err == nil {
		err = p.load()
	} else if errors.Is(err, fs.ErrNotExist) {
		err = &fs.PathError{Op: "watching", Path: p.path, Err: errors.New("file is missing; keeping the last good version until it is back")}
	}
	if err != nil {
		p.failed, p.lastBad = true, st
		if p.onError != nil {
			p.onError(err)
		}
		return
	}
	p.current, p.failed = st, false
}
