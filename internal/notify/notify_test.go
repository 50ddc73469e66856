package notify

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/panopticon-dev/panopticon/internal/flowlog"
)

// receiver records webhook posts.
type receiver struct {
	mu     sync.Mutex
	bodies [][]byte
	sigs   []string
	status func(n int) int // status for the n-th post (1-based); nil: 200
	posts  atomic.Int64
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	n := int(rc.posts.Add(1))
	rc.mu.Lock()
	rc.bodies = append(rc.bodies, body)
	rc.sigs = append(rc.sigs, r.Header.Get(SignatureHeader))
	rc.mu.Unlock()
	status := 200
	if rc.status != nil {
		status = rc.status(n)
	}
	w.WriteHeader(status)
}

func (rc *receiver) got() ([][]byte, []string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([][]byte(nil), rc.bodies...), append([]string(nil), rc.sigs...)
}

func start(t *testing.T, n *Notifier) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func block(host, reason string) flowlog.Event {
	return flowlog.Event{Time: time.Unix(1700000000, 0).UTC(), Kind: flowlog.KindEgress, Decision: flowlog.Block, Reason: reason, Host: host, Port: 443, Method: "POST", Path: "/upload", Client: "127.0.0.1:5555"}
}

func TestOneSignedNotificationPerDedupedBlock(t *testing.T) {
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	n := New(Options{URL: srv.URL, Secret: "s3cret", Dedup: time.Minute})
	start(t, n)

	for range 5 {
		n.Notify(block("evil.test", "not-allowlisted"))
	}
	n.Notify(block("evil.test", "ip-literal"))                                                     // another reason
	n.Notify(block("other.test", "not-allowlisted"))                                               // another host
	n.Notify(flowlog.Event{Kind: flowlog.KindEgress, Decision: flowlog.Allow, Host: "ok.test"})    // not a block
	n.Notify(flowlog.Event{Kind: flowlog.KindEgress, Decision: "would-block", Host: "audit.test"}) // not a block
	waitFor(t, "3 posts", func() bool { return rc.posts.Load() >= 3 })
	time.Sleep(50 * time.Millisecond) // nothing more may arrive
	bodies, sigs := rc.got()
	if len(bodies) != 3 {
		t.Fatalf("receiver got %d posts, want 3 (one per host and reason)", len(bodies))
	}
	seen := map[string]bool{}
	for i, body := range bodies {
		if !verify("s3cret", body, sigs[i]) {
			t.Errorf("post %d: signature %q does not verify", i, sigs[i])
		}
		if verify("wrong", body, sigs[i]) {
			t.Errorf("post %d verifies under the wrong secret", i)
		}
		var m struct {
			Host, Reason, Decision, Kind, Text, Method, Path string
			Port                                             int
		}
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("post %d: %v: %s", i, err, body)
		}
		if m.Decision != "block" || m.Kind != "egress" || m.Port != 443 || m.Text == "" {
			t.Errorf("post %d: %s", i, body)
		}
		seen[m.Host+" "+m.Reason] = true
	}
	for _, k := range []string{"evil.test not-allowlisted", "evil.test ip-literal", "other.test not-allowlisted"} {
		if !seen[k] {
			t.Errorf("no notification for %s; got %v", k, seen)
		}
	}
	if s := n.Stats(); s.Deduped != 4 || s.Deliveries[ResultOK] != 3 {
		t.Errorf("stats %+v, want 4 deduplicated and 3 ok", s)
	}
}

func TestDedupWindowExpires(t *testing.T) {
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	var now atomic.Int64
	now.Store(time.Unix(1000, 0).UnixNano())
	n := New(Options{URL: srv.URL, Dedup: time.Minute, Now: func() time.Time { return time.Unix(0, now.Load()) }})
	start(t, n)
	n.Notify(block("a.test", "not-allowlisted"))
	now.Add(int64(59 * time.Second))
	n.Notify(block("a.test", "not-allowlisted"))
	now.Add(int64(2 * time.Second))
	n.Notify(block("a.test", "not-allowlisted"))
	waitFor(t, "2 posts", func() bool { return rc.posts.Load() >= 2 })
	time.Sleep(30 * time.Millisecond)
	if got := rc.posts.Load(); got != 2 {
		t.Errorf("%d posts, want 2 (the second block is within the window)", got)
	}
}

func TestUnsignedWithoutSecret(t *testing.T) {
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	n := New(Options{URL: srv.URL})
	start(t, n)
	n.Notify(block("a.test", "not-allowlisted"))
	waitFor(t, "a post", func() bool { return rc.posts.Load() >= 1 })
	if _, sigs := rc.got(); sigs[0] != "" {
		t.Errorf("signature %q sent without a secret", sigs[0])
	}
}

func TestRetriesThenGivesUp(t *testing.T) {
	t.Run("5xx is retried", func(t *testing.T) {
		rc := &receiver{status: func(n int) int {
			if n < 3 {
				return 503
			}
			return 204
		}}
		srv := httptest.NewServer(rc)
		defer srv.Close()
		n := New(Options{URL: srv.URL, Backoff: time.Millisecond, MaxAttempts: 5})
		start(t, n)
		n.Notify(block("a.test", "not-allowlisted"))
		waitFor(t, "delivery", func() bool { return n.Stats().Deliveries[ResultOK] == 1 })
		if s := n.Stats(); s.Deliveries[ResultRetry] != 2 || rc.posts.Load() != 3 {
			t.Errorf("stats %+v after %d posts, want 2 retries and 3 posts", s, rc.posts.Load())
		}
	})
	t.Run("attempts are bounded", func(t *testing.T) {
		rc := &receiver{status: func(int) int { return 500 }}
		srv := httptest.NewServer(rc)
		defer srv.Close()
		n := New(Options{URL: srv.URL, Backoff: time.Millisecond, MaxAttempts: 3})
		start(t, n)
		n.Notify(block("a.test", "not-allowlisted"))
		waitFor(t, "giving up", func() bool { return n.Stats().Deliveries[ResultError] == 1 })
		if got := rc.posts.Load(); got != 3 {
			t.Errorf("%d posts, want 3 attempts", got)
		}
	})
	t.Run("4xx is not retried", func(t *testing.T) {
		rc := &receiver{status: func(int) int { return 404 }}
		srv := httptest.NewServer(rc)
		defer srv.Close()
		n := New(Options{URL: srv.URL, Backoff: time.Millisecond})
		start(t, n)
		n.Notify(block("a.test", "not-allowlisted"))
		waitFor(t, "giving up", func() bool { return n.Stats().Deliveries[ResultError] == 1 })
		if got := rc.posts.Load(); got != 1 {
			t.Errorf("%d posts, want 1", got)
		}
	})
}

// A receiver that accepts and never answers must not slow the proxy: the
// flow log's Emit (what every door calls) stays fast, and what does not fit
// in the queue is dropped and counted.
func TestDeadReceiverDoesNotSlowEmit(t *testing.T) {
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(hang)

	log, err := flowlog.New(flowlog.Options{Dir: filepath.Join(t.TempDir(), "log")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	n := New(Options{URL: srv.URL, QueueSize: 16, Timeout: 10 * time.Second})
	start(t, n)
	events, cancel := log.Subscribe(4096)
	defer cancel()
	forwarded := make(chan struct{})
	go func() {
		for e := range events {
			n.Notify(e)
		}
		close(forwarded)
	}()

	const emits = 1000
	began := time.Now()
	for i := range emits {
		log.Emit(block("h"+strconv.Itoa(i)+".test", "not-allowlisted"))
	}
	// Generous against -race and a busy machine; a blocking Emit would take
	// the webhook's 10 s timeout.
	if took := time.Since(began); took > 500*time.Millisecond {
		t.Errorf("%d Emits took %v with a dead webhook, want < 500ms", emits, took)
	}
	waitFor(t, "every block to be queued or dropped", func() bool {
		s := n.Stats()
		return s.Dropped+uint64(len(n.queue))+uint64(n.opts.Workers) >= emits
	})
	s := n.Stats()
	if s.Dropped < emits-16-uint64(n.opts.Workers) {
		t.Errorf("dropped %d, want at least %d (queue 16, %d workers stuck)", s.Dropped, emits-16-n.opts.Workers, n.opts.Workers)
	}
}

func TestText(t *testing.T) {
	got := Text(block("evil.test", "not-allowlisted"))
	want := "panopticon blocked egress to `evil.test:443` (not-allowlisted): `POST /upload`"
	if got != want {
		t.Errorf("Text = %q, want %q", got, want)
	}
}

func TestErrorsDoNotCarryTheURL(t *testing.T) {
	n := New(Options{URL: "http://127.0.0.1:1/services/T000/B000/XXXXsecretXXXX", Timeout: time.Second})
	err := n.post(context.Background(), []byte("{}"))
	if err == nil {
		t.Fatal("post to a closed port succeeded")
	}
	if s := err.Error(); strings.Contains(s, "XXXXsecretXXXX") {
		t.Errorf("error %q carries the webhook URL", s)
	}
}

func TestTextKeepsAgentControlledPartsInert(t *testing.T) {
	e := flowlog.Event{Kind: flowlog.KindEgress, Host: "evil.test", Port: 443, Reason: "not-allowlisted",
		Method: "GET", Path: "/<https://evil.example/?d=DATA|Approve>`@channel`"}
	got := Text(e)
	for _, bad := range []string{"<https://", "|Approve>", "`@channel`"} {
		if strings.Contains(got, bad) {
			t.Errorf("text %q keeps %q active", got, bad)
		}
	}
	if !strings.Contains(got, "&lt;https://evil.example/?d=DATA|Approve&gt;") {
		t.Errorf("text %q does not show the escaped path", got)
	}
}

// verify is what a webhook receiver does: recompute the signature and
// compare in constant time.
func verify(secret string, body []byte, sig string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(sig))
}
