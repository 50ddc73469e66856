// Package flowlog defines the flow event, the single record every door emits,
// and fans events out to a rotating JSON file, a readable stdout line and live
// subscribers (the dashboard, the webhook notifier).
//
//	l, err := flowlog.New(flowlog.Options{Dir: "/var/log/panopticon"}, os.Stdout)
//	l.Emit(flowlog.Event{Kind: flowlog.KindEgress, Decision: flowlog.Allow, Host: "example.com"})
//	events, cancel := l.Subscribe(256) // e.g. for the dashboard
//	defer cancel()
//
// Each event becomes one JSON line in Dir/flows.jsonl, written with a single
// Write so concurrent lines never interleave. A failing disk never stops the
// proxy: the event is counted in Dropped and the first failure each minute is
// reported through Options.OnError. A slow subscriber never stops Emit: its
// events are dropped and counted in SubscriberDrops. ReadRecent reads the
// newest events back, for the dashboard and a tail command.
//
// Non-goals: deciding anything; it records what doors decided. Events never
// carry real secret values — doors put placeholders in Path and secret names in Secrets.
package flowlog

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"gopkg.in/natefinch/lumberjack.v2"
)

// Kinds and decisions.
const (
	KindEgress  = "egress"
	KindInbound = "inbound"
	KindDNS     = "dns"

	Allow = "allow"
	Block = "block"
	// WouldBlock marks a flow the allowlist would refuse, let through in audit mode.
	WouldBlock = "would-block"
)

// JSON field names, one place for the schema.
const (
	FieldTime       = "time"
	FieldKind       = "kind"
	FieldDecision   = "decision"
	FieldReason     = "reason"
	FieldClient     = "client"
	FieldHost       = "host"
	FieldPort       = "port"
	FieldMethod     = "method"
	FieldPath       = "path"
	FieldStatus     = "status"
	FieldBytesIn    = "bytes_in"
	FieldBytesOut   = "bytes_out"
	FieldDurationMS = "duration_ms"
	FieldSecrets    = "secrets"
)

// FileName is the current log file inside Options.Dir. Rotated backups are
// named flows-<UTC time>.jsonl (.gz when compressed).
const FileName = "flows.jsonl"

// Defaults applied by New to zero Options fields.
const (
	DefaultMaxSizeMB  = 100
	DefaultMaxBackups = 5
)

// errorReportInterval limits how often a failing disk is reported.
const errorReportInterval = time.Minute

// Event is one flow, allowed or blocked.
type Event struct {
	Time       time.Time `json:"time"`
	Kind       string    `json:"kind"`
	Decision   string    `json:"decision"`
	Reason     string    `json:"reason"`
	Rule       string    `json:"rule,omitempty"`        // the allowlist entry that allowed the flow (egress, DNS)
	RuleSource string    `json:"rule_source,omitempty"` // where that entry is written: "allowlist.txt:7"
	Client     string    `json:"client"`
	Host       string    `json:"host"`
	Port       int       `json:"port"`
	Method     string    `json:"method,omitempty"`
	Path       string    `json:"path,omitempty"`
	Status     int       `json:"status,omitempty"`
	BytesIn    int64     `json:"bytes_in"`  // bytes received from the far side (upstream response / inbound request body)
	BytesOut   int64     `json:"bytes_out"` // bytes sent to the far side
	DurationMS int64     `json:"duration_ms"`
	Secrets    []string  `json:"secrets,omitempty"`
	// Detail is free-form extra context (e.g. DNS qtype and answers, the original destination IP).
	Detail map[string]string `json:"detail,omitempty"`

	// RequestHeaders and ResponseHeaders travel to live subscribers (the
	// dashboard's detail view) but never into the log file. Doors fill them
	// with placeholders only: the request as the agent sent it, the response
	// after redaction.
	RequestHeaders  map[string][]string `json:"-"`
	ResponseHeaders map[string][]string `json:"-"`
}

// Options configure the file writer (lumberjack).
type Options struct {
	Dir        string // flows.jsonl is written here
	MaxSizeMB  int    // rotate after this size (default 100)
	MaxBackups int    // keep this many rotated files (default 5)
	MaxAgeDays int    // delete rotated files older than this (0: keep)
	Compress   bool   // gzip rotated files

	// Redact, when set, replaces real secret values in the free-text fields
	// (host, path, reason, detail) of every event before it goes anywhere.
	Redact func(string) string

	// StdoutJSON writes the JSON line (as in the file) to stdout instead of
	// the readable line — for a cluster's log collector.
	StdoutJSON bool

	// OnError receives the first file-write failure of each minute (the
	// others are only counted in Dropped). Nil logs through slog.Default.
	// It is called without locks held and may itself call Emit.
	OnError func(error)
	// Now is the clock for events without a Time; nil means time.Now.
	Now func() time.Time
}

// Log writes events and fans them out. Safe for concurrent use; Emit never blocks
// on a slow subscriber (it drops for that subscriber and counts the drop).
type Log struct {
	path       string
	stdout     io.Writer
	stdoutJSON bool
	stdoutCh   chan []byte // guarded by mu for sends and close
	stdoutDone chan struct{}
	stdoutDrop atomic.Uint64
	redact     func(string) string
	onError    func(error)
	now        func() time.Time

	mu         sync.Mutex
	file       io.WriteCloser // guarded by mu
	closed     bool           // guarded by mu
	lastReport time.Time      // guarded by mu

	subs subscribers

	emitted, dropped atomic.Uint64
}

// New opens Dir/flows.jsonl. stdout, when non-nil, receives one readable line per event.
//
// Dir is created (0750) when missing. An existing flows.jsonl must be an
// appendable file; a missing one is created on the first Emit, by whoever
// runs then (so after a privilege drop the new file belongs to the proxy user).
func New(opts Options, stdout io.Writer) (*Log, error) {
	if opts.Dir == "" {
		return nil, errors.New("opening flow log: no directory given")
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("creating flow log directory %s: %w", opts.Dir, err)
	}
	path := filepath.Join(opts.Dir, FileName)
	if err := checkAppendable(path); err != nil {
		return nil, err
	}
	// Unset (zero, or negative where max(…, 0) is used) means the default.
	opts.MaxSizeMB = cmp.Or(max(opts.MaxSizeMB, 0), DefaultMaxSizeMB)
	opts.MaxBackups = cmp.Or(max(opts.MaxBackups, 0), DefaultMaxBackups)
	return newLog(path, &lumberjack.Logger{
		Filename:   path,
		MaxSize:    opts.MaxSizeMB,
		MaxBackups: opts.MaxBackups,
		MaxAge:     opts.MaxAgeDays,
		Compress:   opts.Compress,
	}, stdout, opts), nil
}

// newLog wires a Log around any file writer.
func newLog(path string, file io.WriteCloser, stdout io.Writer, opts Options) *Log {
	l := &Log{path: path, file: file, stdout: stdout, stdoutJSON: opts.StdoutJSON, redact: opts.Redact, onError: opts.OnError, now: opts.Now}
	if stdout != nil {
		// stdout is a pipe someone else drains (a container runtime, a log
		// collector): if it stalls, lines are dropped and counted instead of
		// stalling every door that emits.
		l.stdoutCh = make(chan []byte, stdoutQueue)
		l.stdoutDone = make(chan struct{})
		go l.writeStdout()
	}
	if l.onError == nil {
		l.onError = func(err error) { slog.Error("flow log write failed", "err", err) }
	}
	if l.now == nil {
		l.now = time.Now
	}
	return l
}

// checkAppendable fails early for a flows.jsonl that exists but cannot be
// appended to (a directory, wrong owner), instead of at the first event.
func checkAppendable(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checking flow log %s: %w", path, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("opening flow log %s: it is a directory", path)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("opening flow log %s for appending: %w", path, err)
	}
	return f.Close()
}

// Path returns the current log file's path.
func (l *Log) Path() string { return l.path }

// Emit records e (filling Time when zero).
func (l *Log) Emit(e Event) {
	if e.Time.IsZero() {
		e.Time = l.now()
	}
	e.Time = e.Time.UTC()
	// Subscribers share e; keep the caller's later changes out of it.
	e.Secrets = slices.Clone(e.Secrets)
	e.Detail = maps.Clone(e.Detail)
	if l.redact != nil {
		// Agent- and upstream-controlled text: a real secret value must not
		// reach the file, stdout, the dashboard or a webhook through it.
		e.Host, e.Path, e.Reason, e.Method = l.redact(e.Host), l.redact(e.Path), l.redact(e.Reason), l.redact(e.Method)
		for k, v := range e.Detail {
			e.Detail[k] = l.redact(v)
		}
	}

	line, encErr := encode(e)

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.emitted.Add(1)
	err := encErr
	if err == nil {
		_, err = l.file.Write(line)
		if err != nil {
			err = fmt.Errorf("writing flow event to %s: %w", l.path, err)
		}
	}
	var report error
	if err != nil {
		n := l.dropped.Add(1)
		if now := l.now(); l.lastReport.IsZero() || now.Sub(l.lastReport) >= errorReportInterval {
			l.lastReport = now
			report = fmt.Errorf("%w (%d events dropped so far; further failures this minute are only counted)", err, n)
		}
	}
	if l.stdoutCh != nil { // a broken or stalled stdout must not stop the file log
		var out []byte
		if l.stdoutJSON {
			if encErr == nil {
				out = line
			}
		} else {
			out = FormatLine(e)
		}
		if out != nil {
			select {
			case l.stdoutCh <- out:
			default:
				l.stdoutDrop.Add(1)
			}
		}
	}
	l.mu.Unlock()

	if report != nil {
		l.onError(report)
	}
	l.subs.publish(e)
}

// encode renders e as one JSON line. HTML escaping is off so paths stay readable.
func encode(e Event) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil { // Encode appends the newline
		return nil, fmt.Errorf("encoding flow event for %s: %w", e.Host, err)
	}
	return buf.Bytes(), nil
}

// Emitted counts events accepted by Emit (written or dropped).
func (l *Log) Emitted() uint64 { return l.emitted.Load() }

// Dropped counts events that could not be written to the file.
func (l *Log) Dropped() uint64 { return l.dropped.Load() }

// StdoutDropped counts stdout lines dropped because stdout did not keep up.
func (l *Log) StdoutDropped() uint64 { return l.stdoutDrop.Load() }

// stdoutQueue bounds the lines waiting for a slow stdout.
const stdoutQueue = 4096

// writeStdout copies queued lines to stdout, batching what has piled up into
// one write.
func (l *Log) writeStdout() {
	defer close(l.stdoutDone)
	var buf []byte
	for line := range l.stdoutCh {
		buf = append(buf[:0], line...)
	more:
		for len(buf) < 64<<10 {
			select {
			case next, ok := <-l.stdoutCh:
				if !ok {
					break more
				}
				buf = append(buf, next...)
			default:
				break more
			}
		}
		_, _ = l.stdout.Write(buf)
	}
}

// Close flushes and closes the file.
//
// Later Emits are no-ops. Subscriber channels are closed, so their readers end.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	err := l.file.Close()
	if l.stdoutCh != nil {
		close(l.stdoutCh)
	}
	l.mu.Unlock()
	if l.stdoutDone != nil {
		// Every line emitted before Close reaches stdout — unless stdout is
		// stalled, which must not keep the process from exiting.
		select {
		case <-l.stdoutDone:
		case <-time.After(2 * time.Second):
		}
	}
	l.subs.closeAll()
	if err != nil {
		return fmt.Errorf("closing flow log %s: %w", l.path, err)
	}
	return nil
}
