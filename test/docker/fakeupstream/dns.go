package main

import (
	"errors"
	"flag"
	"log"
	"net"
	"os"

	"github.com/miekg/dns"
)

func runDNS(args []string) error {
	fs := flag.NewFlagSet("dns", flag.ContinueOnError)
	addr := fs.String("listen", ":53", "UDP and TCP address")
	a := fs.String("a", "203.0.113.10", "IPv4 answer for every A question")
	aaaa := fs.String("aaaa", "", "IPv6 answer for every AAAA question (empty: none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log.SetFlags(0)
	log.SetOutput(os.Stdout)
	v4 := net.ParseIP(*a).To4()
	if v4 == nil {
		return errors.New("-a: want an IPv4 address")
	}
	var v6 net.IP
	if *aaaa != "" {
		if v6 = net.ParseIP(*aaaa); v6 == nil || v6.To4() != nil {
			return errors.New("-aaaa: want an IPv6 address")
		}
	}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Authoritative = true
		for _, question := range q.Question {
			log.Printf("QUERY name=%s type=%s from=%s", question.Name, dns.TypeToString[question.Qtype], w.RemoteAddr())
			hdr := dns.RR_Header{Name: question.Name, Class: dns.ClassINET, Ttl: 30}
			switch {
			case question.Qtype == dns.TypeA:
				hdr.Rrtype = dns.TypeA
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: v4})
			case question.Qtype == dns.TypeAAAA && v6 != nil:
				hdr.Rrtype = dns.TypeAAAA
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: v6})
			}
		}
		_ = w.WriteMsg(m)
	})
	errc := make(chan error, 2)
	for _, network := range []string{"udp", "tcp"} {
		srv := &dns.Server{Addr: *addr, Net: network, Handler: handler}
		go func() { errc <- srv.ListenAndServe() }()
	}
	log.Printf("READY dns=%s a=%s aaaa=%s", *addr, v4, v6)
	return <-errc
}
