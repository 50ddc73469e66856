package dns

import (
	"errors"

	miekg "github.com/miekg/dns"
)

// The messages the DNS door builds: a canonical question goes up, a reply in
// the agent's spelling comes back, with our own EDNS.

// checkReply rejects an upstream reply that does not answer query.
func checkReply(query, resp *miekg.Msg) error {
	if !resp.Response || resp.Opcode != miekg.OpcodeQuery {
		return errors.New("reply is not a query response")
	}
	if resp.Id != query.Id {
		return errors.New("reply has another ID")
	}
	// Some servers omit the question in error replies; when present it must match.
	if len(resp.Question) > 0 {
		q, got := query.Question[0], resp.Question[0]
		if len(resp.Question) != 1 || got.Qtype != q.Qtype || got.Qclass != q.Qclass ||
			miekg.CanonicalName(got.Name) != miekg.CanonicalName(q.Name) {
			return errors.New("reply answers another question")
		}
	}
	if resp.Truncated {
		return errors.New("reply truncated even over TCP")
	}
	return nil
}

// clientReply turns the upstream reply into the reply to r, sized for the client's transport.
func (s *Server) clientReply(r, resp *miekg.Msg, opt *miekg.OPT, tcp bool) *miekg.Msg {
	resp.Id = r.Id
	resp.Question = []miekg.Question{r.Question[0]} // the client's spelling (0x20 case)
	restoreCase(resp.Answer, r.Question[0].Name)
	resp.RecursionDesired = r.RecursionDesired
	resp.RecursionAvailable = true
	resp.Truncated = false
	resp.Extra = withoutOPT(resp.Extra)
	if resp.Rcode > 0xF && opt == nil {
		// An extended rcode cannot be told to a client that did not speak EDNS.
		return errorReply(r, miekg.RcodeServerFailure, nil)
	}
	if opt != nil {
		resp.Extra = append(resp.Extra, replyOPT(opt))
	}
	size := miekg.MaxMsgSize
	if !tcp {
		size = miekg.MinMsgSize
		if opt != nil && int(opt.UDPSize()) > size {
			size = int(opt.UDPSize())
		}
	}
	resp.Truncate(size)
	return resp
}

// restoreCase gives records owned by the question name the client's
// spelling of it, as a resolver that echoes 0x20 case would.
func restoreCase(rrs []miekg.RR, name string) {
	canon := miekg.CanonicalName(name)
	for _, rr := range rrs {
		if h := rr.Header(); h.Name == canon {
			h.Name = miekg.Fqdn(name)
		}
	}
}

// servedQuestion reports whether q is a lookup we forward: class IN and an
// ordinary type.
func servedQuestion(q miekg.Question) bool {
	return q.Qclass == miekg.ClassINET && forwardedTypes[q.Qtype]
}

// clientEDNS returns the client's OPT record; more than one is malformed (RFC 6891 6.1.1).
func clientEDNS(r *miekg.Msg) (*miekg.OPT, error) {
	var opt *miekg.OPT
	for _, rr := range r.Extra {
		o, ok := rr.(*miekg.OPT)
		if !ok {
			continue
		}
		if opt != nil {
			return nil, errors.New("more than one OPT record")
		}
		opt = o
	}
	return opt, nil
}

// replyOPT is the OPT record of a reply to a client that sent opt.
func replyOPT(opt *miekg.OPT) *miekg.OPT {
	o := &miekg.OPT{Hdr: miekg.RR_Header{Name: ".", Rrtype: miekg.TypeOPT}}
	o.SetUDPSize(ednsSize)
	if opt.Do() {
		o.SetDo()
	}
	return o
}

func withoutOPT(rrs []miekg.RR) []miekg.RR {
	kept := rrs[:0:0]
	for _, rr := range rrs {
		if rr.Header().Rrtype != miekg.TypeOPT {
			kept = append(kept, rr)
		}
	}
	return kept
}

// errorReply is an empty reply to r with rcode; it speaks EDNS when the client did.
func errorReply(r *miekg.Msg, rcode int, opt *miekg.OPT) *miekg.Msg {
	m := new(miekg.Msg)
	m.SetRcode(r, rcode)
	if r.Opcode != miekg.OpcodeQuery {
		m.Question = nil // we did not parse an unknown opcode's sections
	}
	m.Authoritative = false
	m.RecursionAvailable = true
	if opt != nil {
		m.Extra = append(m.Extra, replyOPT(opt))
	}
	return m
}
