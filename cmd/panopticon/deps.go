package main

import (
	"context"
	"crypto/x509"
	"io"
	"log/slog"

	"github.com/panopticon-dev/panopticon/internal/ca"
	"github.com/panopticon-dev/panopticon/internal/config"
	"github.com/panopticon-dev/panopticon/internal/filewatch"
	"github.com/panopticon-dev/panopticon/internal/flowlog"
	"github.com/panopticon-dev/panopticon/internal/policy"
	"github.com/panopticon-dev/panopticon/internal/upstream"
)

// deps are the shared pieces every door and service is built from.
type deps struct {
	cfg       config.Config
	logger    *slog.Logger
	stdout    io.Writer
	policy    *policy.Policy
	flows     *flowlog.Log
	authority *ca.CA
	minter    *ca.Minter
	allowFile *filewatch.File[*policy.Allowlist] // ALLOWLIST_FILE, kept current
	resolver  *upstream.Resolver                 // UPSTREAM_DNS, from marked sockets
	roots     *x509.CertPool                     // what upstreams are verified against
}

// service is something bound as root (bind*) and served after the privilege
// drop. A nil serve means the service is disabled.
type service struct {
	name  string
	serve func(ctx context.Context) error
}
