package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"github.com/miekg/dns"
)

// smallBody is the 100-byte answer of GET /.
var smallBody = bytes.Repeat([]byte("0123456789"), 10)

// upstreamCmd serves the fake internet; it runs inside netNS. It prints
// "ready" once every listener is open and serves until ctx is done.
func upstreamCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("upstream", flag.ExitOnError)
	dir := fs.String("dir", "", "directory holding bench.{crt,key} and nores.{crt,key}")
	_ = fs.Parse(args)

	for _, s := range []struct {
		ip, base string
		tickets  bool
	}{{upstreamIP, "bench", true}, {noResumeIP, "nores", false}} {
		cert, err := tls.LoadX509KeyPair(filepath.Join(*dir, s.base+".crt"), filepath.Join(*dir, s.base+".key"))
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(s.ip, "443"))
		if err != nil {
			return err
		}
		srv := &http.Server{
			Handler:           upstreamHandler(),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       10 * time.Minute,
			// HTTP/1.1 only, as a typical API behind a load balancer speaks to a proxy.
			TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
			ErrorLog:     log.New(io.Discard, "", 0), // handshakes cut at the end of a load
		}
		tlsConf := &tls.Config{
			Certificates:           []tls.Certificate{cert},
			SessionTicketsDisabled: !s.tickets,
			NextProtos:             []string{"http/1.1"},
		}
		go func() { _ = srv.Serve(tls.NewListener(ln, tlsConf)) }()
		defer srv.Close()
	}

	addr := net.JoinHostPort(dnsIP, "53")
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	tl, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	h := dns.HandlerFunc(serveZone)
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: tl, Handler: h}
	go func() { _ = udp.ActivateAndServe() }()
	go func() { _ = tcp.ActivateAndServe() }()
	defer udp.Shutdown()
	defer tcp.Shutdown()

	fmt.Println("ready")
	<-ctx.Done()
	return nil
}

func upstreamHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"text/plain"}
		h["Content-Length"] = []string{"100"}
		_, _ = w.Write(smallBody)
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil || n < 0 || n > 1<<30 {
			http.Error(w, "bad n", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
		for n > 0 {
			k := min(n, int64(len(chunk)))
			if _, err := w.Write(chunk[:k]); err != nil {
				return
			}
			n -= k
		}
	})
	// /upload is a sink: it answers with the number of body bytes it read.
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%d", n)
	})
	return mux
}

func serveZone(w dns.ResponseWriter, req *dns.Msg) {
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.Authoritative = true
	if len(req.Question) != 1 {
		resp.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(resp)
		return
	}
	q := req.Question[0]
	ip, ok := hostIPs[dns.CanonicalName(q.Name)]
	switch {
	case !ok:
		resp.Rcode = dns.RcodeNameError
	case q.Qtype == dns.TypeA:
		resp.Answer = append(resp.Answer, &dns.A{
			Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
			A:   net.ParseIP(ip).To4(),
		})
	}
	_ = w.WriteMsg(resp)
}
