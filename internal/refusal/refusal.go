// Package refusal is the one list of reasons why panopticon refuses,
// withholds or cuts something, and the one way an HTTP door says so.
//
// Every door (egress, inbound, DNS) puts these tokens in the flow log's
// `reason` field; HTTP doors also send them in the X-Panopticon-Block header
// with the status listed here; metrics label blocks by them and the
// dashboard groups by them. README's table of reasons is checked against
// List by a test, so the documentation cannot drift from the code.
//
//	refusal.Write(w, refusal.NotAllowlisted, "evil.test is not on the allowlist")
//
// Non-goals: deciding anything. Policy, the doors and the secret engine
// decide; this package only names and renders their answers.
package refusal

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Header carries the reason of every HTTP refusal, so an agent can tell its
// user why.
const Header = "X-Panopticon-Block"

// The reasons. Each is a token in the flow log and the Header.
const (
	// Destinations (policy).
	NotAllowlisted = "not-allowlisted"
	PortNotAllowed = "port-not-allowed"
	IPLiteral      = "ip-literal"
	BadHost        = "bad-host"
	PrivateAddress = "private-address"

	// What the transparent egress door sees on the wire.
	HostMismatch = "host-mismatch"
	NoSNI        = "no-sni"
	NoHost       = "no-host"
	NotTLSOrHTTP = "not-tls-or-http"
	Loop         = "loop"
	Connect      = "connect-refused"
	BadRequest   = "bad-request"
	Revoked      = "revoked"

	// The upstream and its answers.
	UpstreamError  = "upstream-error"
	UpstreamCert   = "upstream-cert-invalid"
	Undecodable    = "undecodable-response"
	PartialContent = "partial-content"

	// Secrets.
	SecretUnauthorised = "secret-not-authorised"
	SecretPlainHTTP    = "secret-plain-http"
	SecretLeak         = "secret-leak"
	SecretPin          = "secret-pin-mismatch"
	SuspectedLeak      = "suspected-leak"

	// The inbound door.
	SourceNotAllowed = "source-not-allowed"
	Filter           = "filter" // in the flow log: "filter:<file>:<line>", the rule that matched
	BadUpgrade       = "upgrade-not-websocket"
	BodyTooLarge     = "body-too-large"
	ClientTimeout    = "client-timeout"
	ClientError      = "client-error"
	ClientGone       = "client-gone"
	AppUnavailable   = "app-unavailable"
	AppError         = "app-error"
	WSProtocol       = "websocket-protocol-error"

	// The DNS door.
	Malformed   = "malformed-query"
	Unsupported = "unsupported-query"
)

// Reason is one entry of the registry.
type Reason struct {
	Token string
	// Status is what an HTTP door answers with; 0 where no HTTP answer is
	// given (the connection is closed, or the door is DNS).
	Status  int
	Doors   string // where it occurs: "egress", "inbound", "dns", comma-separated
	Meaning string // one line, for README and the dashboard
}

var registry = []Reason{
	{NotAllowlisted, http.StatusForbidden, "egress, dns", "no allowlist entry matches the host (DNS: NXDOMAIN)"},
	{PortNotAllowed, http.StatusForbidden, "egress", "an entry matches the host, but not on this port"},
	{IPLiteral, http.StatusForbidden, "egress", "destinations are host names, never IP addresses (also TLS without SNI to an IP)"},
	{BadHost, http.StatusForbidden, "egress, dns", "empty or malformed host name"},
	{PrivateAddress, http.StatusForbidden, "egress, dns", "the name resolves into a guarded (private, loopback, metadata) range (DNS: REFUSED)"},
	{HostMismatch, http.StatusForbidden, "egress", "the Host header (or its port) differs from the TLS server name or the connection's port"},
	{NoSNI, http.StatusForbidden, "egress", "TLS without a server name"},
	{NoHost, http.StatusForbidden, "egress", "plain HTTP without a Host header"},
	{NotTLSOrHTTP, 0, "egress", "the first bytes are neither a TLS ClientHello nor an HTTP request: the connection is closed"},
	{Loop, 0, "egress", "a connection straight back to panopticon's own listeners: closed"},
	{Connect, http.StatusMethodNotAllowed, "egress", "CONNECT inside an intercepted connection: panopticon is not a forward proxy"},
	{BadRequest, http.StatusBadRequest, "egress", "the request body could not be read to check it for placeholders"},
	{Revoked, 0, "egress", "an open connection closed because a reload took its host off the allowlist (`detail.policy` says what the new list answers)"},
	{UpstreamError, http.StatusBadGateway, "egress", "the upstream could not be reached or broke off"},
	{UpstreamCert, http.StatusBadGateway, "egress", "the upstream's certificate does not verify"},
	{Undecodable, http.StatusBadGateway, "egress", "an answer withheld because its body could not be decoded to be scanned for real values"},
	{PartialContent, http.StatusBadGateway, "egress", "a 206 answer withheld: pieces of a value could be put together again"},
	{SecretUnauthorised, http.StatusForbidden, "egress", "a placeholder sent to a host outside its secret's domains"},
	{SecretPlainHTTP, http.StatusForbidden, "egress", "a placeholder in a plain-HTTP request"},
	{SecretLeak, http.StatusForbidden, "egress", "the agent sent a real secret value"},
	{SecretPin, http.StatusForbidden, "egress", "the upstream's key is not the one pinned for the secret"},
	{SuspectedLeak, http.StatusForbidden, "egress", "a well-known credential format in the request (LEAK_GUARD=block)"},
	{SourceNotAllowed, http.StatusForbidden, "inbound", "the client's address is not on the source allowlist"},
	{Filter, http.StatusForbidden, "inbound", "a request filter rule matched; the flow log says `filter:<file>:<line>`"},
	{BadUpgrade, http.StatusBadRequest, "inbound", "an upgrade to anything but WebSocket"},
	{BodyTooLarge, http.StatusRequestEntityTooLarge, "inbound", "the request body is over the limit"},
	{ClientTimeout, http.StatusRequestTimeout, "inbound", "the request body stalled"},
	{ClientError, http.StatusBadRequest, "inbound", "the request body could not be read"},
	{ClientGone, 0, "inbound", "the client went away before the answer"},
	{AppUnavailable, http.StatusBadGateway, "inbound", "the app is not answering"},
	{AppError, http.StatusBadGateway, "inbound", "the app's answer was not valid HTTP"},
	{WSProtocol, 0, "inbound", "a WebSocket frame broke the protocol: the connection is closed"},
	{Malformed, 0, "dns", "not exactly one question, or bad EDNS (FORMERR)"},
	{Unsupported, 0, "dns", "an opcode, class or query type panopticon does not forward (NOTIMP)"},
}

// List returns every reason, in the order README lists them.
func List() []Reason { return append([]Reason(nil), registry...) }

// Lookup finds the reason of a flow event's token ("filter:allow.txt:3" is
// Filter's).
func Lookup(token string) (Reason, bool) {
	if t, _, ok := strings.Cut(token, ":"); ok {
		token = t
	}
	for _, r := range registry {
		if r.Token == token {
			return r, true
		}
	}
	return Reason{}, false
}

// Status is the HTTP status token is answered with: 403 for a token that is
// not registered or that has no HTTP answer of its own.
func Status(token string) int {
	if r, ok := Lookup(token); ok && r.Status != 0 {
		return r.Status
	}
	return http.StatusForbidden
}

// Body is the one-line text every HTTP refusal carries.
func Body(msg string) string {
	return "panopticon: blocked: " + strings.Join(strings.Fields(msg), " ") + "\n"
}

// Write answers w with token's status, the Header, and Body(msg), and
// returns the status and the bytes written. Headers already set on w (say
// "Connection: close") are kept.
func Write(w http.ResponseWriter, token, msg string) (status int, n int64) {
	status = Status(token)
	body := Body(msg)
	h := w.Header()
	for k, v := range headers(token, body) {
		h[k] = v
	}
	w.WriteHeader(status)
	k, _ := io.WriteString(w, body)
	return status, int64(k)
}

// Response is Write's answer as an *http.Response to req (for proxy hooks
// that answer in place of the upstream).
func Response(req *http.Request, token, msg string) *http.Response {
	status := Status(token)
	body := Body(msg)
	return &http.Response{
		StatusCode:    status,
		Status:        fmt.Sprintf("%d %s", status, http.StatusText(status)),
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Request:       req,
		Header:        headers(token, body),
		ContentLength: int64(len(body)),
		Body:          io.NopCloser(strings.NewReader(body)),
	}
}

// headers are what every refusal carries besides its status.
func headers(token, body string) http.Header {
	return http.Header{
		Header:                   {headerValue(token)},
		"Content-Type":           {"text/plain; charset=utf-8"},
		"X-Content-Type-Options": {"nosniff"},
		"Cache-Control":          {"no-store"},
		"Content-Length":         {strconv.Itoa(len(body))},
	}
}

// headerValue is the registered token: a filter match is "filter" in the
// header (the file and line are for the flow log, not the agent).
func headerValue(token string) string {
	if r, ok := Lookup(token); ok {
		return r.Token
	}
	return token
}

// Markdown renders the registry as README's table.
func Markdown() string {
	var b strings.Builder
	b.WriteString("| reason | HTTP status | door | meaning |\n|---|---|---|---|\n")
	for _, r := range registry {
		status := "–"
		if r.Status != 0 {
			status = strconv.Itoa(r.Status)
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", r.Token, status, r.Doors, r.Meaning)
	}
	return b.String()
}
