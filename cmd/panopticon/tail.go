package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/panopticon-dev/panopticon/internal/config"
	"github.com/panopticon-dev/panopticon/internal/flowlog"
	"github.com/panopticon-dev/panopticon/internal/policy"
)

// tailOptions are the flags of `panopticon tail`.
type tailOptions struct {
	dir     string
	blocked bool   // block and would-block only
	host    string // this host and its subdomains
	kind    string
	json    bool // the log's JSON lines, as written
	color   bool
	lines   int  // history lines printed first
	follow  bool // keep reading as the log grows (and rotates)
	poll    time.Duration
}

// tailMain runs `panopticon tail`: print the newest flows, then follow
// $LOG_DIR/flows.jsonl across rotations until interrupted.
func tailMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("panopticon tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: panopticon tail [--blocked] [--host H] [--kind K] [--json] [--log-dir DIR] [-n N] [--no-follow] [--color]")
		fs.PrintDefaults()
	}
	defDir := os.Getenv("LOG_DIR")
	if defDir == "" {
		defDir = defaultOf("LOG_DIR")
	}
	var o tailOptions
	fs.StringVar(&o.dir, "log-dir", defDir, "directory holding flows.jsonl (default $LOG_DIR)")
	fs.BoolVar(&o.blocked, "blocked", false, "only blocked (and would-block) flows")
	fs.StringVar(&o.host, "host", "", "only flows to this host or its subdomains")
	fs.StringVar(&o.kind, "kind", "", "only flows of this kind: egress, dns or inbound")
	fs.BoolVar(&o.json, "json", false, "print the JSON lines as logged")
	color := fs.Bool("color", false, "colour the output even when it is not a terminal")
	fs.IntVar(&o.lines, "n", 10, "print this many recent flows first")
	noFollow := fs.Bool("no-follow", false, "print the recent flows and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "panopticon tail: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	switch o.kind {
	case "", flowlog.KindEgress, flowlog.KindDNS, flowlog.KindInbound:
	default:
		fmt.Fprintf(stderr, "panopticon tail: --kind %q: want egress, dns or inbound\n", o.kind)
		return 2
	}
	o.host = hostFilter(o.host)
	o.follow = !*noFollow
	o.color = !o.json && (*color || (isTerminal(stdout) && os.Getenv("NO_COLOR") == ""))
	o.poll = 250 * time.Millisecond

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := tail(ctx, o, stdout); err != nil {
		fmt.Fprintf(stderr, "panopticon tail: %v\n", err)
		return 1
	}
	return 0
}

func defaultOf(name string) string {
	for _, v := range config.Vars {
		if v.Name == name {
			return v.Default
		}
	}
	return ""
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// tail prints the last o.lines matching flows, then (with o.follow) new ones
// until ctx ends.
func tail(ctx context.Context, o tailOptions, w io.Writer) error {
	if o.lines > 0 {
		// Read more than asked, since filters may hide most of them.
		n := o.lines
		if o.blocked || o.host != "" || o.kind != "" {
			n = max(n*20, 1000)
		}
		events, err := flowlog.ReadRecent(o.dir, n)
		if err != nil && !(errors.Is(err, os.ErrNotExist) && o.follow) {
			return err
		}
		var shown []flowlog.Event
		for _, e := range events {
			if o.match(e) {
				shown = append(shown, e)
			}
		}
		for _, e := range shown[max(0, len(shown)-o.lines):] {
			if err := o.print(w, e, nil); err != nil {
				return err
			}
		}
	}
	if !o.follow {
		return nil
	}
	// Lines written between the history read and here are not shown; the
	// window is a few milliseconds.
	f := &follower{path: filepath.Join(o.dir, flowlog.FileName), poll: o.poll}
	defer f.close()
	return f.run(ctx, true, func(line []byte) error {
		var e flowlog.Event
		if json.Unmarshal(line, &e) != nil || !o.match(e) {
			return nil
		}
		return o.print(w, e, line)
	})
}

// hostFilter spells --host as the flow log does: a name as policy.Host
// normalises it (so "Bücher.example" finds xn--bcher-kva.example), anything
// else (an address) lower-cased without its trailing dot.
func hostFilter(s string) string {
	if h, err := policy.ParseHost(s); err == nil {
		return h.String()
	}
	return strings.TrimSuffix(strings.ToLower(s), ".")
}

func (o tailOptions) match(e flowlog.Event) bool {
	if o.blocked && e.Decision != flowlog.Block && e.Decision != flowlog.WouldBlock {
		return false
	}
	if o.kind != "" && e.Kind != o.kind {
		return false
	}
	if o.host != "" {
		h := strings.TrimSuffix(strings.ToLower(e.Host), ".")
		if h != o.host && !strings.HasSuffix(h, "."+o.host) {
			return false
		}
	}
	return true
}

func (o tailOptions) print(w io.Writer, e flowlog.Event, raw []byte) error {
	var out []byte
	if o.json {
		if raw == nil {
			var err error
			if raw, err = json.Marshal(e); err != nil {
				return nil
			}
		}
		out = append(bytes.TrimRight(raw, "\n"), '\n')
	} else {
		out = []byte(formatTail(e, o.color))
	}
	_, err := w.Write(out)
	return err
}

// formatTail renders one aligned line, e.g.
//
//	18:32:45  egress   allow        api.openai.com:443                 GET /v1/chat 200 1.2kB 35ms  [*.openai.com]
//	18:32:46  egress   BLOCK        evil.test:443                      POST /upload  not-allowlisted
//
// in local time: flowlog's readable line, in columns.
func formatTail(e flowlog.Event, color bool) string {
	e.Time = e.Time.Local()
	return flowlog.Line(e, flowlog.Style{Columns: true, Color: color})
}

// follower reads lines appended to a file, also across rotation (the file
// renamed and a new one created: a different inode at path) and truncation.
type follower struct {
	path string
	poll time.Duration

	f       *os.File
	info    os.FileInfo // of f, at open
	off     int64
	partial []byte
}

// maxTailLine bounds a line without a newline yet; longer is not our log.
const maxTailLine = 1 << 20

// run calls fn for each complete line until ctx ends or fn fails. fromEnd
// skips what the file holds when first opened; a file created later (after
// a rotation) is read from its start.
func (fl *follower) run(ctx context.Context, fromEnd bool, fn func([]byte) error) error {
	tick := time.NewTicker(fl.poll)
	defer tick.Stop()
	for {
		if fl.f == nil {
			if err := fl.open(fromEnd); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		fromEnd = false // only the file there at start is skipped
		if fl.f != nil {
			if err := fl.read(fn); err != nil {
				return err
			}
			switch st, err := os.Stat(fl.path); {
			case err != nil:
				// Mid-rotation: renamed, the new one not created yet.
			case !os.SameFile(st, fl.info):
				// Rotated: finish the old file (written up to the rename),
				// then start the new one from its beginning.
				if err := fl.read(fn); err != nil {
					return err
				}
				fl.close()
				continue
			case st.Size() < fl.off:
				// Truncated in place: start again from the top.
				fl.off, fl.partial = 0, nil
				continue
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func (fl *follower) open(fromEnd bool) error {
	f, err := os.Open(fl.path)
	if err != nil {
		return err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	fl.f, fl.info, fl.off, fl.partial = f, info, 0, nil
	if fromEnd {
		fl.off = info.Size()
	}
	return nil
}

func (fl *follower) close() {
	if fl.f != nil {
		fl.f.Close()
		fl.f = nil
	}
}

// read hands fn every complete line from fl.off to the end of the file.
func (fl *follower) read(fn func([]byte) error) error {
	buf := make([]byte, 64<<10)
	for {
		n, err := fl.f.ReadAt(buf, fl.off)
		fl.off += int64(n)
		data := append(fl.partial, buf[:n]...)
		for {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				break
			}
			if line := data[:i]; len(line) > 0 {
				if err := fn(line); err != nil {
					return err
				}
			}
			data = data[i+1:]
		}
		fl.partial = append(fl.partial[:0], data...)
		if len(fl.partial) > maxTailLine {
			fl.partial = fl.partial[:0]
		}
		if err == io.EOF || n == 0 {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", fl.path, err)
		}
	}
}
