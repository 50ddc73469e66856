// Package secrets keeps the real API keys away from the app: the app holds
// placeholders, and the egress proxy swaps them for real values only on the way
// to a host authorised for them, over verified TLS.
//
// The table comes from the environment:
//
//	PLACEHOLDER_SECRET_VALUE_OPENAI='sk-…'                 # the real value; single-quote it
//	PLACEHOLDER_SECRET_DOMAINS_OPENAI=api.openai.com       # allowlist patterns, comma separated
//	PLACEHOLDER_SECRET_PINS_OPENAI=sha256/<base64 SPKI>    # optional certificate pins
//
// and the placeholder the app sends is the VALUE variable's name itself,
// "PLACEHOLDER_SECRET_VALUE_OPENAI". Usage from a door:
//
//	tab, warnings, err := secrets.FromEnv(env)  // at start-up; log warnings, exit on err
//	rw := tab.RewriterFor(secrets.Upstream{Host: name, VerifiedTLS: true}) // per request; name is a policy.Host
//	if err := rw.Request(req); err != nil {     // URL, headers (incl. Basic), body
//		var v *secrets.Violation                // → 403, reason v.Error()
//	}
//	red := tab.Redactor(tab.Names())            // once: every real value → its placeholder
//	ok, err := red.Response(resp)               // per response, from any host; !ok or err: withhold it
//
// What is substituted: the request target (path segments and query parameters
// are percent-decoded, swapped and re-escaped, so "PLACEHOLDER%5FSECRET…" is
// found too), userinfo, every header value, the user and password inside
// "Basic" credentials, bodies that are identity, gzip or deflate encoded
// (streamed, placeholders split across reads are found), and outbound
// WebSocket messages (across the frames of one message).
//
// What is not substituted, with reasons: request bodies in other encodings
// (br, zstd: swapping would mean re-encoding them; they are still scanned for
// real values and the caller logs them), header names and the Host (a placeholder there is
// a Violation: no legitimate use), trailers (they arrive after the request
// was checked), and compressed WebSocket frames (permessage-deflate: the caller must
// strip Sec-WebSocket-Extensions; such frames are an error).
//
// Redaction runs over responses from every host: one pass of a gram-sampling
// matcher over every spelling of every value (raw, escaped, base64 at each
// alignment, also broken into lines), after decoding gzip, deflate, br, zstd
// and stacked codings; a coding it cannot decode is reported so the caller
// can withhold the body.
//
// The leak guard refuses, for any host, input that carries a real value in
// raw, percent-escaped, JSON-escaped or base64 form; SuspectLeaks names
// well-known credential formats (never the matched text).
//
// Every type that holds a real value prints, logs and formats in a redacted
// form. Non-goals: networking, TLS verification (the caller passes the
// verified name and chain), reading the environment itself.
package secrets
