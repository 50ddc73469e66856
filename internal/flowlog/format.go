package flowlog

import (
	"net"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

const maxLinePath = 120 // longer paths are cut in a readable line (never in the file)

// Style is how a readable line is laid out. The stdout line is Style{};
// `panopticon tail` pads columns (and colours them on a terminal).
type Style struct {
	Columns bool // kind, decision and host in aligned columns, parts two spaces apart
	Color   bool // ANSI colours (for a terminal)
}

// ANSI colours of a coloured line.
const (
	ansiReset  = "\x1b[0m"
	ansiDim    = "\x1b[2m"
	ansiRed    = "\x1b[1;31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiCyan   = "\x1b[36m"
)

// Column widths of a Columns line.
const (
	kindWidth     = 7
	decisionWidth = 11 // "would-block"
	hostWidth     = 34
)

// FormatLine renders e as the one readable stdout line, newline included:
//
//	18:32:45 egress  allow api.openai.com:443 GET /v1/chat 200 1.2kB 35ms [*.openai.com] secrets=OPENAI
//	18:32:46 egress  BLOCK evil.test:443 not-allowlisted
//	18:32:47 inbound allow app.example:443 from 203.0.113.9 POST /hook 200 312B 4ms [source-allowed]
func FormatLine(e Event) []byte { return []byte(Line(e, Style{})) }

// Line renders e as one readable line, newline included. The size is bytes
// in plus bytes out, shown (with the duration) for every flow that was let
// through. The reason is in brackets for an allowed flow (the rule that
// matched) and bare otherwise. Text from the wire is quoted when it holds
// control characters, so it cannot forge lines or drive a terminal.
func Line(e Event, st Style) string {
	paint := func(code, s string) string {
		if !st.Color || s == "" {
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
	sep := " "
	if st.Columns {
		sep = "  "
	}
	var b strings.Builder
	b.WriteString(paint(ansiDim, e.Time.Format(time.TimeOnly)))
	b.WriteString(sep + pad(clean(e.Kind), kindWidth) + sep)

	dec, decColor := clean(e.Decision), ""
	switch e.Decision {
	case Allow:
		decColor = ansiGreen
	case Block:
		dec, decColor = "BLOCK", ansiRed
	case WouldBlock:
		decColor = ansiYellow
	}
	b.WriteString(paint(decColor, dec))
	if st.Columns {
		b.WriteString(strings.Repeat(" ", max(1, decisionWidth+2-utf8.RuneCountInString(dec))))
	} else {
		b.WriteByte(' ')
	}
	host := clean(e.Host)
	if host == "" {
		host = "-"
	}
	if e.Port != 0 {
		host = net.JoinHostPort(host, strconv.Itoa(e.Port))
	}
	if st.Columns {
		host = pad(host, hostWidth)
	}
	b.WriteString(host)

	var rest []string
	if e.Kind == KindInbound && e.Client != "" {
		rest = append(rest, "from "+clean(e.Client))
	}
	if e.Method != "" {
		rest = append(rest, clean(e.Method))
	}
	if e.Path != "" {
		rest = append(rest, clean(truncate(e.Path, maxLinePath)))
	}
	if e.Status != 0 {
		rest = append(rest, strconv.Itoa(e.Status))
	}
	if e.Decision != Block {
		rest = append(rest, formatBytes(e.BytesIn+e.BytesOut), formatDuration(e.DurationMS))
	}
	if len(rest) > 0 || st.Columns {
		b.WriteString(" " + strings.Join(rest, " "))
	}
	if e.Reason != "" {
		if e.Decision == Allow {
			b.WriteString(sep + paint(ansiCyan, "["+clean(e.Reason)+"]"))
		} else {
			b.WriteString(sep + paint(decColor, clean(e.Reason)))
		}
	}
	if len(e.Secrets) > 0 {
		names := make([]string, len(e.Secrets))
		for i, s := range e.Secrets {
			names[i] = clean(s)
		}
		b.WriteString(sep + "secrets=" + strings.Join(names, ","))
	}
	return strings.TrimRight(b.String(), " ") + "\n"
}

// clean quotes s when it holds control or other non-printable characters.
func clean(s string) string {
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}

// formatBytes renders n with SI units: 999B, 1.2kB, 3.4MB.
func formatBytes(n int64) string {
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
	panic("unreachable")
}

func formatDuration(ms int64) string {
	if ms < 10_000 {
		return strconv.FormatInt(ms, 10) + "ms"
	}
	return strconv.FormatFloat(float64(ms)/1000, 'f', 1, 64) + "s"
}
