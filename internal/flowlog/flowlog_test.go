package flowlog_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/panopticon-dev/panopticon/internal/flowlog"
)

func newLog(t *testing.T, opts flowlog.Options) *flowlog.Log {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	l, err := flowlog.New(opts, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// readLines returns every line of dir/flows.jsonl decoded as a generic map.
func readLines(t *testing.T, dir string) []map[string]any {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, flowlog.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %d is not a JSON object: %v: %q", len(out)+1, err, sc.Text())
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSchema(t *testing.T) {
	always := []string{
		flowlog.FieldTime, flowlog.FieldKind, flowlog.FieldDecision, flowlog.FieldReason,
		flowlog.FieldClient, flowlog.FieldHost, flowlog.FieldPort, flowlog.FieldBytesIn,
		flowlog.FieldBytesOut, flowlog.FieldDurationMS,
	}
	tests := []struct {
		name  string
		event flowlog.Event
		extra []string
	}{
		{
			name:  "dns, minimal",
			event: flowlog.Event{Kind: flowlog.KindDNS, Decision: flowlog.Block, Reason: "not-allowlisted", Host: "evil.test"},
		},
		{
			name:  "empty secrets omitted",
			event: flowlog.Event{Kind: flowlog.KindEgress, Decision: flowlog.Allow, Host: "a.test", Secrets: []string{}},
		},
		{
			name: "http, everything set",
			event: flowlog.Event{
				Kind: flowlog.KindEgress, Decision: flowlog.Allow, Reason: "*.openai.com",
				Client: "10.0.0.2:41000", Host: "api.openai.com", Port: 443,
				Method: "POST", Path: "/v1/chat?k=PLACEHOLDER_SECRET_VALUE_OPENAI", Status: 200,
				BytesIn: 1234, BytesOut: 56, DurationMS: 35, Secrets: []string{"PLACEHOLDER_SECRET_VALUE_OPENAI"},
			},
			extra: []string{flowlog.FieldMethod, flowlog.FieldPath, flowlog.FieldStatus, flowlog.FieldSecrets},
		},
		{
			name:  "detail",
			event: flowlog.Event{Kind: flowlog.KindDNS, Decision: flowlog.Allow, Host: "a.test", Detail: map[string]string{"qtype": "AAAA"}},
			extra: []string{"detail"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l := newLog(t, flowlog.Options{Dir: dir})
			before := time.Now()
			l.Emit(tt.event)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			lines := readLines(t, dir)
			if len(lines) != 1 {
				t.Fatalf("%d lines, want 1", len(lines))
			}
			got := slices.Sorted(func(yield func(string) bool) {
				for k := range lines[0] {
					if !yield(k) {
						return
					}
				}
			})
			want := slices.Sorted(slices.Values(append(slices.Clone(always), tt.extra...)))
			if !slices.Equal(got, want) {
				t.Errorf("keys = %v\nwant   %v", got, want)
			}
			ts, err := time.Parse(time.RFC3339, lines[0][flowlog.FieldTime].(string))
			if err != nil {
				t.Fatalf("time is not RFC 3339: %v", err)
			}
			if ts.Before(before.Add(-time.Second)) || ts.After(time.Now().Add(time.Second)) {
				t.Errorf("time %v not filled with now", ts)
			}
			if !strings.HasSuffix(lines[0][flowlog.FieldTime].(string), "Z") {
				t.Errorf("time %q is not UTC", lines[0][flowlog.FieldTime])
			}
			if lines[0][flowlog.FieldHost] != tt.event.Host {
				t.Errorf("host = %v, want %s", lines[0][flowlog.FieldHost], tt.event.Host)
			}
		})
	}
}

func TestEmitKeepsGivenTime(t *testing.T) {
	dir := t.TempDir()
	l := newLog(t, flowlog.Options{Dir: dir})
	at := time.Date(2030, 1, 2, 3, 4, 5, 6_000_000, time.FixedZone("x", 3600))
	l.Emit(flowlog.Event{Time: at, Kind: flowlog.KindEgress, Decision: flowlog.Allow})
	l.Close()
	if got := readLines(t, dir)[0][flowlog.FieldTime]; got != "2030-01-02T02:04:05.006Z" {
		t.Errorf("time = %v, want 2030-01-02T02:04:05.006Z", got)
	}
}

func TestConcurrentEmit(t *testing.T) {
	dir := t.TempDir()
	l := newLog(t, flowlog.Options{Dir: dir})
	const goroutines, each = 100, 100
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				l.Emit(flowlog.Event{
					Kind: flowlog.KindEgress, Decision: flowlog.Allow, Host: "a.test", Port: g,
					Path: strings.Repeat("x", i), BytesIn: int64(i),
				})
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, dir)
	if len(lines) != goroutines*each {
		t.Fatalf("%d lines, want %d", len(lines), goroutines*each)
	}
	seen := map[[2]int]bool{}
	for _, m := range lines {
		seen[[2]int{int(m[flowlog.FieldPort].(float64)), int(m[flowlog.FieldBytesIn].(float64))}] = true
	}
	if len(seen) != goroutines*each {
		t.Errorf("%d distinct events, want %d", len(seen), goroutines*each)
	}
	if l.Emitted() != goroutines*each || l.Dropped() != 0 {
		t.Errorf("Emitted, Dropped = %d, %d", l.Emitted(), l.Dropped())
	}
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	l := newLog(t, flowlog.Options{Dir: dir, MaxSizeMB: 1, MaxBackups: 3})
	pad := strings.Repeat("p", 1000)
	const total = 2500 // about 2.7 MB
	for i := range total {
		l.Emit(flowlog.Event{Kind: flowlog.KindEgress, Decision: flowlog.Allow, Host: "a.test", Path: pad, Status: i + 1})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	backups, _ := filepath.Glob(filepath.Join(dir, "flows-*.jsonl"))
	if len(backups) < 2 {
		t.Fatalf("%d backups after writing ~2.7 MB with MaxSizeMB=1, want at least 2", len(backups))
	}
	for _, f := range append(backups, filepath.Join(dir, flowlog.FileName)) {
		if fi, err := os.Stat(f); err != nil || fi.Size() > 1<<20 {
			t.Errorf("%s: size %d, err %v; want at most 1 MiB", f, fi.Size(), err)
		}
	}

	t.Run("ReadRecent spans backups", func(t *testing.T) {
		const n = 1500 // more than one file holds
		events, err := flowlog.ReadRecent(dir, n)
		if err != nil {
			t.Fatal(err)
		}
		if len(events) != n {
			t.Fatalf("ReadRecent returned %d events, want %d", len(events), n)
		}
		for i, e := range events {
			if want := total - n + i + 1; e.Status != want {
				t.Fatalf("event %d has status %d, want %d (oldest first, no gaps)", i, e.Status, want)
			}
		}
	})
}

func TestReadRecent(t *testing.T) {
	dir := t.TempDir()
	l := newLog(t, flowlog.Options{Dir: dir})
	for i := range 10 {
		l.Emit(flowlog.Event{Kind: flowlog.KindDNS, Decision: flowlog.Allow, Host: "a.test", Status: i + 1})
	}
	l.Close()
	// A crash can leave a cut-off last line; it is skipped.
	f, err := os.OpenFile(filepath.Join(dir, flowlog.FileName), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"time":"2030-01-0`)
	f.Close()

	tests := []struct {
		name string
		n    int
		want []int // statuses
	}{
		{"last three", 3, []int{8, 9, 10}},
		{"more than there are", 50, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{"zero", 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events, err := flowlog.ReadRecent(dir, tt.n)
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, e := range events {
				got = append(got, e.Status)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("statuses = %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("empty dir", func(t *testing.T) {
		events, err := flowlog.ReadRecent(t.TempDir(), 5)
		if err != nil || len(events) != 0 {
			t.Errorf("ReadRecent(empty) = %v, %v; want nothing, nil", events, err)
		}
	})
	t.Run("missing dir", func(t *testing.T) {
		if _, err := flowlog.ReadRecent(filepath.Join(dir, "nope"), 5); err == nil {
			t.Error("ReadRecent(missing dir) succeeded")
		}
	})
}

func TestSubscribe(t *testing.T) {
	l := newLog(t, flowlog.Options{})
	fast, cancelFast := l.Subscribe(10)
	defer cancelFast()
	slow, cancelSlow := l.Subscribe(1) // never read until the end

	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 5 {
			l.Emit(flowlog.Event{Kind: flowlog.KindEgress, Decision: flowlog.Allow, Status: i + 1})
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Emit blocked on a full subscriber")
	}
	for i := range 5 {
		select {
		case e := <-fast:
			if e.Status != i+1 {
				t.Errorf("fast subscriber got status %d, want %d", e.Status, i+1)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("fast subscriber missed event %d", i+1)
		}
	}
	if got := l.SubscriberDrops(); got != 4 {
		t.Errorf("SubscriberDrops = %d, want 4 (slow buffer holds 1 of 5)", got)
	}

	cancelSlow()
	cancelSlow() // idempotent
	if e, ok := <-slow; !ok || e.Status != 1 {
		t.Errorf("slow subscriber's buffered event = %v, %v; want status 1", e.Status, ok)
	}
	if _, ok := <-slow; ok {
		t.Error("channel still open after cancel")
	}
	l.Emit(flowlog.Event{}) // must not send on the cancelled channel

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for range fast { // Close closes remaining subscriptions
	}
	late, cancelLate := l.Subscribe(1)
	if _, ok := <-late; ok {
		t.Error("Subscribe after Close returned an open channel")
	}
	cancelLate()
}

func TestSubscriberCannotAlterOthers(t *testing.T) {
	l := newLog(t, flowlog.Options{})
	ch, cancel := l.Subscribe(1)
	defer cancel()
	secrets := []string{"A"}
	l.Emit(flowlog.Event{Secrets: secrets})
	secrets[0] = "changed by the door"
	if e := <-ch; e.Secrets[0] != "A" {
		t.Errorf("subscriber saw the caller's later change: %v", e.Secrets)
	}
}

func TestEmitAfterClose(t *testing.T) {
	dir := t.TempDir()
	l := newLog(t, flowlog.Options{Dir: dir})
	l.Emit(flowlog.Event{Host: "before"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	l.Emit(flowlog.Event{Host: "after"})
	if lines := readLines(t, dir); len(lines) != 1 {
		t.Errorf("%d lines, want only the one before Close", len(lines))
	}
}

func TestWriteFailureCounted(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full to simulate a full disk")
	}
	dir := t.TempDir()
	// flows.jsonl → /dev/full: every write fails with ENOSPC, as on a full disk.
	if err := os.Symlink("/dev/full", filepath.Join(dir, flowlog.FileName)); err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		errs   []error
		stdout bytes.Buffer
	)
	l, err := flowlog.New(flowlog.Options{Dir: dir, OnError: func(err error) {
		mu.Lock()
		defer mu.Unlock()
		errs = append(errs, err)
	}}, &stdout)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer l.Close()
	sub, cancel := l.Subscribe(10)
	defer cancel()
	for range 5 {
		l.Emit(flowlog.Event{Kind: flowlog.KindEgress, Decision: flowlog.Allow, Host: "a.test"})
	}
	if got := l.Dropped(); got != 5 {
		t.Errorf("Dropped = %d, want 5", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(errs) != 1 {
		t.Fatalf("OnError called %d times within a minute, want once", len(errs))
	}
	if !strings.Contains(errs[0].Error(), flowlog.FileName) {
		t.Errorf("error %q does not name the file", errs[0])
	}
	if len(sub) != 5 {
		t.Errorf("subscriber got %d events, want all 5 despite the failing file", len(sub))
	}
	l.Close() // stdout is written asynchronously; Close drains it
	if n := strings.Count(stdout.String(), "\n"); n != 5 {
		t.Errorf("stdout has %d lines, want 5", n)
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T) string // returns Dir
	}{
		{"no dir", func(t *testing.T) string { return "" }},
		{"flows.jsonl is a directory", func(t *testing.T) string {
			dir := t.TempDir()
			if err := os.Mkdir(filepath.Join(dir, flowlog.FileName), 0o755); err != nil {
				t.Fatal(err)
			}
			return dir
		}},
		{"dir below a file", func(t *testing.T) string {
			file := filepath.Join(t.TempDir(), "file")
			if err := os.WriteFile(file, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(file, "logs")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.setup(t)
			l, err := flowlog.New(flowlog.Options{Dir: dir}, nil)
			if err == nil {
				l.Close()
				t.Fatal("New succeeded")
			}
			if dir != "" && !strings.Contains(err.Error(), dir) {
				t.Errorf("error %q does not name %s", err, dir)
			}
		})
	}
}

func TestNewCreatesDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	l := newLog(t, flowlog.Options{Dir: dir})
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o750 {
		t.Errorf("dir mode %v, want 0750", fi.Mode().Perm())
	}
	if l.Path() != filepath.Join(dir, flowlog.FileName) {
		t.Errorf("Path = %s", l.Path())
	}
}

func TestSubscribeCancelWhileEmitting(t *testing.T) {
	l := newLog(t, flowlog.Options{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					l.Emit(flowlog.Event{Kind: flowlog.KindDNS})
				}
			}
		})
	}
	for range 200 {
		ch, cancel := l.Subscribe(1)
		<-ch
		cancel()
	}
	close(stop)
	wg.Wait()
}

func TestRedactCleansFreeTextBeforeAnyoneSeesIt(t *testing.T) {
	const real = "sk-test-FAKE-redact-me"
	dir := t.TempDir()
	redact := func(s string) string { return strings.ReplaceAll(s, real, "PLACEHOLDER_SECRET_VALUE_X") }
	l := newLog(t, flowlog.Options{Dir: dir, Redact: redact})
	ch, cancel := l.Subscribe(1)
	defer cancel()
	l.Emit(flowlog.Event{Kind: flowlog.KindEgress, Decision: flowlog.Block, Reason: "secret-leak " + real,
		Host: real + ".evil.test", Path: "/?k=" + real, Detail: map[string]string{"error": "echo " + real}})
	live := <-ch
	for _, s := range []string{live.Host, live.Path, live.Reason, live.Detail["error"]} {
		if strings.Contains(s, real) {
			t.Errorf("subscriber got a real value: %q", s)
		}
	}
	l.Close()
	data, err := os.ReadFile(filepath.Join(dir, flowlog.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), real) {
		t.Fatalf("the log file holds a real value: %s", data)
	}
	if !strings.Contains(string(data), "PLACEHOLDER_SECRET_VALUE_X") {
		t.Fatalf("the placeholder is missing: %s", data)
	}
}

// blockingWriter never returns from Write until released: a stdout pipe
// nobody drains.
type blockingWriter struct{ release chan struct{} }

func (w blockingWriter) Write(b []byte) (int, error) { <-w.release; return len(b), nil }

func TestAStalledStdoutDoesNotStallEmit(t *testing.T) {
	w := blockingWriter{release: make(chan struct{})}
	l, err := flowlog.New(flowlog.Options{Dir: t.TempDir()}, w)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		for range 10000 {
			l.Emit(flowlog.Event{Kind: flowlog.KindEgress, Decision: flowlog.Allow, Host: "a.test"})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Emit blocked behind a stalled stdout")
	}
	if l.StdoutDropped() == 0 {
		t.Error("no stdout line counted as dropped")
	}
	if l.Emitted() != 10000 {
		t.Errorf("Emitted = %d, want 10000 (the file log is not affected)", l.Emitted())
	}
	close(w.release)
	l.Close()
}
