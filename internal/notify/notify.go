// Package notify posts a JSON message to a webhook for each blocked flow.
//
//	n := notify.New(notify.Options{URL: cfg.WebhookURL, Secret: cfg.WebhookSecret, Dedup: time.Minute, Client: client})
//	go n.Run(ctx)
//	events, cancel := flows.Subscribe(1024)
//	for e := range events { n.Notify(e) } // never blocks
//
// The body is the flow event's fields plus "text", a one-line summary that
// Slack- and Discord-style incoming webhooks display as the message. With a
// secret, X-Panopticon-Signature carries "sha256=" and the hex HMAC-SHA256 of
// the body under that secret.
//
// Notify never waits: a block already reported for the same host and reason
// within the dedup window is counted and skipped, and a full queue drops the
// notification and counts it. A bounded number of workers deliver, each
// attempt with a timeout, retrying transport errors, 429 and 5xx with
// exponential backoff up to MaxAttempts. A slow or dead receiver therefore
// costs memory bounded by the queue, never proxy latency.
//
// Non-goals: guaranteed delivery (the flow log is the record), batching,
// following redirects (a webhook URL that redirects is a misconfiguration).
package notify

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panopticon-dev/panopticon/internal/flowlog"
)

// SignatureHeader carries "sha256=<hex HMAC-SHA256 of the body>".
const SignatureHeader = "X-Panopticon-Signature"

// Defaults for zero Options fields.
const (
	DefaultQueueSize   = 256
	DefaultWorkers     = 2
	DefaultMaxAttempts = 4
	DefaultTimeout     = 10 * time.Second
	DefaultBackoff     = time.Second
	DefaultMaxBackoff  = 30 * time.Second

	maxDedupKeys = 10_000
)

// Results counted by Stats.Deliveries.
const (
	ResultOK    = "ok"    // the receiver answered 2xx
	ResultRetry = "retry" // an attempt failed and another follows
	ResultError = "error" // given up: a 4xx answer, or the last attempt failed
)

// Options configure a Notifier.
type Options struct {
	URL    string
	Secret string        // HMAC key; empty sends no signature
	Dedup  time.Duration // one notification per host and reason within this window; 0 = every block

	// Client sends the requests; nil uses a client with Timeout and no
	// proxy. Its redirects are never followed.
	Client      *http.Client
	QueueSize   int
	Workers     int
	MaxAttempts int
	Timeout     time.Duration // per attempt
	Backoff     time.Duration // before the second attempt; doubles each time
	MaxBackoff  time.Duration
	Logger      *slog.Logger
	Now         func() time.Time
}

// Notifier delivers block notifications. Create it with New.
type Notifier struct {
	opts  Options
	queue chan flowlog.Event

	mu   sync.Mutex
	seen map[dedupKey]time.Time // guarded by mu

	ok, retry, failed, dropped, deduped atomic.Uint64
}

type dedupKey struct{ host, reason string }

// New returns a Notifier; call Run to start delivering.
func New(opts Options) *Notifier {
	// Unset (zero, or negative where max(…, 0) is used) means the default.
	opts.QueueSize = cmp.Or(max(opts.QueueSize, 0), DefaultQueueSize)
	opts.Workers = cmp.Or(max(opts.Workers, 0), DefaultWorkers)
	opts.MaxAttempts = cmp.Or(max(opts.MaxAttempts, 0), DefaultMaxAttempts)
	opts.Timeout = cmp.Or(max(opts.Timeout, 0), DefaultTimeout)
	opts.Backoff = cmp.Or(max(opts.Backoff, 0), DefaultBackoff)
	opts.MaxBackoff = cmp.Or(max(opts.MaxBackoff, 0), DefaultMaxBackoff)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	client := http.Client{Transport: &http.Transport{Proxy: nil, ResponseHeaderTimeout: opts.Timeout}}
	if opts.Client != nil {
		client = *opts.Client
	}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	opts.Client = &client
	return &Notifier{opts: opts, queue: make(chan flowlog.Event, opts.QueueSize), seen: map[dedupKey]time.Time{}}
}

// Notify queues a notification for e when it is a block not reported within
// the dedup window. It never blocks.
func (n *Notifier) Notify(e flowlog.Event) {
	if e.Decision != flowlog.Block {
		return
	}
	if !n.first(e) {
		n.deduped.Add(1)
		return
	}
	select {
	case n.queue <- e:
	default:
		n.dropped.Add(1)
	}
}

// first reports whether e is the first of its host and reason in the window,
// and remembers it.
func (n *Notifier) first(e flowlog.Event) bool {
	if n.opts.Dedup <= 0 {
		return true
	}
	now := n.opts.Now()
	k := dedupKey{e.Host, e.Reason}
	n.mu.Lock()
	defer n.mu.Unlock()
	if t, ok := n.seen[k]; ok && now.Sub(t) < n.opts.Dedup {
		return false
	}
	if len(n.seen) >= maxDedupKeys {
		for k, t := range n.seen {
			if now.Sub(t) >= n.opts.Dedup {
				delete(n.seen, k)
			}
		}
		if len(n.seen) >= maxDedupKeys {
			return true // a flood of distinct blocks: report, but remember no more
		}
	}
	n.seen[k] = now
	return true
}

// Run delivers queued notifications until ctx ends.
func (n *Notifier) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for range n.opts.Workers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case e := <-n.queue:
					n.deliver(ctx, e)
				}
			}
		})
	}
	wg.Wait()
}

// Stats are the notifier's counters.
type Stats struct {
	Deliveries map[string]uint64 // attempts by result: ok, retry, error
	Dropped    uint64            // the queue was full
	Deduped    uint64            // already reported within the window
}

// Stats returns the counters so far.
func (n *Notifier) Stats() Stats {
	return Stats{
		Deliveries: map[string]uint64{ResultOK: n.ok.Load(), ResultRetry: n.retry.Load(), ResultError: n.failed.Load()},
		Dropped:    n.dropped.Load(),
		Deduped:    n.deduped.Load(),
	}
}

// Message is the JSON body: the event's fields plus Text.
type Message struct {
	flowlog.Event
	Text string `json:"text"`
}

// Body renders e as the webhook body.
func Body(e flowlog.Event) ([]byte, error) {
	return json.Marshal(Message{Event: e, Text: Text(e)})
}

// Text is the one-line summary, e.g.
// "panopticon blocked egress to evil.test:443 (not-allowlisted): GET /upload".
func Text(e flowlog.Event) string {
	dest := e.Host
	if dest == "" {
		dest = "?"
	}
	if e.Port != 0 {
		dest = net.JoinHostPort(dest, strconv.Itoa(e.Port))
	}
	s := fmt.Sprintf("panopticon blocked %s to %s (%s)", e.Kind, code(dest), e.Reason)
	if e.Kind == flowlog.KindInbound {
		s = fmt.Sprintf("panopticon blocked inbound %s from %s (%s)", code(dest), code(e.Client), e.Reason)
	}
	if e.Method != "" || e.Path != "" {
		path := e.Path
		if len(path) > 200 {
			path = path[:200] + "…"
		}
		s += ": " + code(e.Method+" "+path)
	}
	return s
}

// code renders agent-controlled text inert in Slack/Discord-style markup: a
// code span (no links, no mentions, no formatting), with the characters Slack
// asks to escape escaped and backticks, which would end the span, replaced.
func code(s string) string {
	return "`" + strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "`", "'").Replace(s) + "`"
}

// Sign returns the signature header value for body under secret.
func Sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// errPermanent marks an answer that retrying will not change (4xx but 429).
var errPermanent = errors.New("not retried")

func (n *Notifier) deliver(ctx context.Context, e flowlog.Event) {
	body, err := Body(e)
	if err != nil {
		n.failed.Add(1)
		n.opts.Logger.Error("webhook: encoding notification", "host", e.Host, "err", err)
		return
	}
	backoff := n.opts.Backoff
	for attempt := 1; ; attempt++ {
		err := n.post(ctx, body)
		if err == nil {
			n.ok.Add(1)
			return
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errPermanent) || attempt >= n.opts.MaxAttempts {
			n.failed.Add(1)
			n.opts.Logger.Warn("webhook: delivery failed; giving up", "host", e.Host, "reason", e.Reason, "attempts", attempt, "err", err)
			return
		}
		n.retry.Add(1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, n.opts.MaxBackoff)
	}
}

func (n *Notifier) post(ctx context.Context, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, n.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.opts.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: WEBHOOK_URL does not parse", errPermanent)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "panopticon-webhook")
	if n.opts.Secret != "" {
		req.Header.Set(SignatureHeader, Sign(n.opts.Secret, body))
	}
	resp, err := n.opts.Client.Do(req)
	if err != nil {
		// The URL may itself be a credential (Slack, Discord): never log it.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("posting to webhook: %w", err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return fmt.Errorf("webhook answered %s", resp.Status)
	default:
		return fmt.Errorf("%w: webhook answered %s", errPermanent, resp.Status)
	}
}
