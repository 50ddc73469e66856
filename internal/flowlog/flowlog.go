// Package flowlog defines the flow event, the single record every door emits,
// and fans events out to a rotating JSON file, a readable stdout line and live
// subscribers (the dashboard, the webhook notifier).
//
//	l, err := flowlog.New(flowlog.Options{Dir: "/var/log/panopticon"}, os.Stdout)
//	l.Emit(flowlog.Event{Kind: flowlog.KindEgress, Decision: flowlog.Allow, Host: "example.com"})
//
// Non-goals: deciding anything; it records what doors decided. Events never
// carry real secret values — doors put placeholders in Path and secret names in Secrets.
package flowlog

import (
	"io"
	"time"
)

// Kinds and decisions.
const (
	KindEgress  = "egress"
	KindInbound = "inbound"
	KindDNS     = "dns"

	Allow = "allow"
	Block = "block"
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

// Event is one flow, allowed or blocked.
type Event struct {
	Time       time.Time `json:"time"`
	Kind       string    `json:"kind"`
	Decision   string    `json:"decision"`
	Reason     string    `json:"reason"`
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
}

// Options configure the file writer (lumberjack).
type Options struct {
	Dir        string // flows.jsonl is written here
	MaxSizeMB  int    // rotate after this size (default 100)
	MaxBackups int    // keep this many rotated files (default 5)
	MaxAgeDays int    // delete rotated files older than this (0: keep)
	Compress   bool   // gzip rotated files
}

// Log writes events and fans them out. Safe for concurrent use; Emit never blocks
// on a slow subscriber (it drops for that subscriber and counts the drop).
type Log struct{}

// New opens Dir/flows.jsonl. stdout, when non-nil, receives one readable line per event.
func New(opts Options, stdout io.Writer) (*Log, error) { panic("unimplemented") }

// Emit records e (filling Time when zero).
func (l *Log) Emit(e Event) { panic("unimplemented") }

// Subscribe returns a channel of future events (buffered buf) and a cancel func.
func (l *Log) Subscribe(buf int) (<-chan Event, func()) { panic("unimplemented") }

// Close flushes and closes the file.
func (l *Log) Close() error { panic("unimplemented") }
