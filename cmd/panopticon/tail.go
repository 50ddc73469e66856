package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/panopticon-dev/panopticon/internal/config"
	"github.com/panopticon-dev/panopticon/internal/flowlog"
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
	o.host = strings.TrimSuffix(strings.ToLower(o.host), ".")
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

// ANSI colours.
const (
	ansiReset  = "\x1b[0m"
	ansiDim    = "\x1b[2m"
	ansiRed    = "\x1b[1;31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiCyan   = "\x1b[36m"
)

// Column widths of the tail line.
const (
	kindWidth     = 7
	decisionWidth = 11 // "would-block"
	hostWidth     = 34
)

// formatTail renders one aligned line, e.g.
//
//	18:32:45  egress   allow        api.openai.com:443                 GET /v1/chat 200 1.2kB 35ms  [*.openai.com]
//	18:32:46  egress   BLOCK        evil.test:443                      POST /upload  not-allowlisted
//
// Text from the wire is quoted when it holds control characters.
func formatTail(e flowlog.Event, color bool) string {
	paint := func(code, s string) string {
		if !color || s == "" {
			return s
		}
		return code + s + ansiReset
	}
	pad := func(s string, n int) string {
		if k := utf8.RuneCountInString(s); k < n {
			return s + strings.Repeat(" ", n-k)
		}
		return s
	}
	var b strings.Builder
	b.WriteString(paint(ansiDim, e.Time.Local().Format(time.TimeOnly)))
	b.WriteString("  " + pad(printable(e.Kind), kindWidth) + "  ")
	dec := printable(e.Decision)
	var decColor string
	switch e.Decision {
	case flowlog.Allow:
		decColor = ansiGreen
	case flowlog.Block:
		dec, decColor = "BLOCK", ansiRed
	case flowlog.WouldBlock:
		decColor = ansiYellow
	}
	b.WriteString(paint(decColor, dec) + strings.Repeat(" ", max(1, decisionWidth+2-utf8.RuneCountInString(dec))))
	host := printable(e.Host)
	if host == "" {
		host = "-"
	}
	if e.Port != 0 {
		host = net.JoinHostPort(host, strconv.Itoa(e.Port))
	}
	b.WriteString(pad(host, hostWidth))
	var rest []string
	if e.Kind == flowlog.KindInbound && e.Client != "" {
		rest = append(rest, "from "+printable(e.Client))
	}
	if e.Method != "" {
		rest = append(rest, printable(e.Method))
	}
	if e.Path != "" {
		p := e.Path
		if utf8.RuneCountInString(p) > 100 {
			p = string([]rune(p)[:100]) + "…"
		}
		rest = append(rest, printable(p))
	}
	if e.Status != 0 {
		rest = append(rest, strconv.Itoa(e.Status))
	}
	if e.Decision == flowlog.Allow {
		rest = append(rest, humanBytes(e.BytesIn+e.BytesOut), strconv.FormatInt(e.DurationMS, 10)+"ms")
	}
	b.WriteString(" " + strings.Join(rest, " "))
	if e.Reason != "" {
		if e.Decision == flowlog.Allow {
			b.WriteString("  " + paint(ansiCyan, "["+printable(e.Reason)+"]"))
		} else {
			b.WriteString("  " + paint(decColor, printable(e.Reason)))
		}
	}
	if len(e.Secrets) > 0 {
		names := make([]string, len(e.Secrets))
		for i, s := range e.Secrets {
			names[i] = printable(s)
		}
		b.WriteString("  secrets=" + strings.Join(names, ","))
	}
	return strings.TrimRight(b.String(), " ") + "\n"
}

// printable quotes s when it holds anything a terminal might interpret.
func printable(s string) string {
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

func humanBytes(n int64) string {
	if n < 1000 {
		return strconv.FormatInt(n, 10) + "B"
	}
	f := float64(n)
	for _, unit := range []string{"kB", "MB", "GB", "TB"} {
		f /= 1000
		if f < 1000 || unit == "TB" {
			return strconv.FormatFloat(f, 'f', 1, 64) + unit
		}
	}
	return ""
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
