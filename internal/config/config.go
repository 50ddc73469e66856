// Package config turns the environment (and an optional --env-file) into a
// plain-value Config with defaults, and validates it.
//
//	cfg, err := config.Load(os.Environ(), "/run/panopticon.env")
//	if err == nil { err = cfg.Validate() }
//
// Every error names the variable (or the file and line) at fault. Live objects
// — listeners, loggers, clocks — are not configuration and live elsewhere.
// Non-goals: parsing the allowlist (package policy) or the secret values
// themselves (package secrets; Config only carries their raw variables).
package config

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/joho/godotenv"
)

// SecretPrefix starts every secret variable (PLACEHOLDER_SECRET_VALUE_, _DOMAINS_, _PINS_).
const SecretPrefix = "PLACEHOLDER_SECRET_"

// Config is panopticon's configuration: plain values only.
type Config struct {
	InboundHTTPSPort int
	InboundWSSPort   int
	AppHTTPPort      int
	AppWSPort        int
	DashboardPort    int
	TransparentPort  int
	DNSPort          int

	ProxyUID int
	ProxyGID int

	AllowlistFile     string
	UpstreamDNS       string // host:port
	UpstreamCAFile    string
	AllowPrivateCIDRs []netip.Prefix

	CADir       string
	CAExportDir string
	LogDir      string

	LogMaxSizeMB  int
	LogMaxBackups int
	LogMaxAgeDays int
	LogCompress   bool

	InboundTLSCert     string
	InboundTLSKey      string
	InboundHostnames   []string
	InboundAllowCIDRs  []netip.Prefix
	InboundFilterFile  string // "" = built-in starter rules; "off" = no filtering
	InboundFilterBytes int    // how much of a request body the filter reads
	InboundMaxBodyMB   int

	FlowStdout          string // text | json | off
	Mode                string // enforce | audit
	LeakGuard           string // log | block | off
	DashboardToken      string
	DashboardLocalUIDs  []int
	StateDir            string
	FlowBuffer          int
	WebhookURL          string
	WebhookSecret       string
	WebhookDedupSeconds int

	// Secrets holds the raw PLACEHOLDER_SECRET_* variables, for package secrets.
	// Never log it.
	Secrets map[string]string
}

// Var describes one environment variable: its name, default and meaning. The
// README table and .env.example are written from the same list.
type Var struct {
	Name, Default, Meaning string
}

// Vars lists every variable panopticon reads, in documentation order.
var Vars = []Var{
	{"INBOUND_HTTPS_PORT", "443", "inbound HTTPS reverse proxy → APP_HTTP_PORT"},
	{"INBOUND_WSS_PORT", "12000", "inbound WSS reverse proxy → APP_WS_PORT"},
	{"APP_HTTP_PORT", "8443", "the app's plain HTTP listener on loopback"},
	{"APP_WS_PORT", "12001", "the app's plain WebSocket listener on loopback"},
	{"DASHBOARD_PORT", "8081", "dashboard"},
	{"TRANSPARENT_PORT", "8080", "where redirected egress lands"},
	{"DNS_PORT", "5353", "where redirected DNS lands"},
	{"PROXY_UID", "1337", "uid panopticon drops to"},
	{"PROXY_GID", "1337", "gid panopticon drops to"},
	{"ALLOWLIST_FILE", "/etc/panopticon/allowlist.txt", "egress allowlist"},
	{"UPSTREAM_DNS", "", "resolver used by the proxy itself (default: first nameserver of /etc/resolv.conf)"},
	{"UPSTREAM_CA_FILE", "", "extra roots trusted for upstream TLS"},
	{"ALLOW_PRIVATE_CIDRS", "", "ranges exempt from the private-address guard, comma separated"},
	{"CA_DIR", "/var/lib/panopticon/ca", "CA key and certificate (private)"},
	{"CA_EXPORT_DIR", "/panopticon-certs", "ca-cert.pem and ca-bundle.pem for the app"},
	{"LOG_DIR", "/var/log/panopticon", "flows.jsonl, rotated"},
	{"LOG_MAX_SIZE_MB", "100", "rotate flows.jsonl after this many megabytes"},
	{"LOG_MAX_BACKUPS", "5", "rotated files kept"},
	{"LOG_MAX_AGE_DAYS", "0", "delete rotated files older than this many days (0: keep)"},
	{"LOG_COMPRESS", "false", "gzip rotated files"},
	{"INBOUND_TLS_CERT", "", "PEM certificate for the inbound ports (reloaded when it changes); default: minted from our CA"},
	{"INBOUND_TLS_KEY", "", "PEM key for INBOUND_TLS_CERT"},
	{"INBOUND_HOSTNAMES", "localhost", "names in the minted inbound certificate, comma separated"},
	{"INBOUND_ALLOW_CIDRS", "", "sources allowed on the inbound ports, comma separated (default: everyone)"},
	{"INBOUND_FILTER_FILE", "", "inbound request filter rules (default: the built-in starter rules; off: none)"},
	{"INBOUND_FILTER_BYTES", "65536", "how many bytes of a request body the inbound filter reads"},
	{"INBOUND_MAX_BODY_MB", "32", "largest inbound request body"},
	{"FLOW_STDOUT", "text", "flow events on stdout: text (readable lines), json (for a cluster's log collector) or off"},
	{"MODE", "enforce", "enforce, or audit: let through what the allowlist would block and log it as would-block"},
	{"LEAK_GUARD", "log", "well-known credential formats in requests: log, block or off"},
	{"DASHBOARD_TOKEN", "", "token for the dashboard and its API (default: generated and printed at start-up)"},
	{"DASHBOARD_LOCAL_UIDS", "", "uids that may also reach the dashboard from inside the namespace, comma separated (e.g. 0 for kubectl port-forward; only where the app cannot run as them)"},
	{"STATE_DIR", "/var/lib/panopticon/state", "runtime allowlist and other state"},
	{"FLOW_BUFFER", "1000", "recent flows the dashboard keeps in memory"},
	{"WEBHOOK_URL", "", "receives a JSON POST for each block"},
	{"WEBHOOK_SECRET", "", "HMAC-SHA256 key signing webhook bodies"},
	{"WEBHOOK_DEDUP_SECONDS", "60", "one webhook per host and reason within this window"},
}

// Load builds a Config from environ ("KEY=value" pairs, as os.Environ) and,
// when envFile is not empty, the variables of that file (read with
// godotenv.Read, never put into the process environment). The process
// environment wins over the file. Unset variables take their defaults.
// Load does not Validate.
func Load(environ []string, envFile string) (Config, error) {
	vars := map[string]string{}
	if envFile != "" {
		fileVars, err := godotenv.Read(envFile)
		if err != nil {
			return Config{}, fmt.Errorf("reading --env-file %s: %w", envFile, err)
		}
		for k, v := range fileVars {
			vars[k] = v
		}
	}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	return FromMap(vars)
}

// FromMap builds a Config from a variable map, applying defaults.
func FromMap(vars map[string]string) (Config, error) {
	get := func(name string) string {
		if v, ok := vars[name]; ok && strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v)
		}
		for _, d := range Vars {
			if d.Name == name {
				return d.Default
			}
		}
		return ""
	}
	var errs []error
	num := func(name string) int {
		s := get(name)
		n, err := strconv.Atoi(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: not a whole number", name, s))
		}
		return n
	}
	boolean := func(name string) bool {
		s := get(name)
		b, err := strconv.ParseBool(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: want true or false", name, s))
		}
		return b
	}

	c := Config{
		InboundHTTPSPort: num("INBOUND_HTTPS_PORT"),
		InboundWSSPort:   num("INBOUND_WSS_PORT"),
		AppHTTPPort:      num("APP_HTTP_PORT"),
		AppWSPort:        num("APP_WS_PORT"),
		DashboardPort:    num("DASHBOARD_PORT"),
		TransparentPort:  num("TRANSPARENT_PORT"),
		DNSPort:          num("DNS_PORT"),
		ProxyUID:         num("PROXY_UID"),
		ProxyGID:         num("PROXY_GID"),
		AllowlistFile:    get("ALLOWLIST_FILE"),
		UpstreamDNS:      get("UPSTREAM_DNS"),
		UpstreamCAFile:   get("UPSTREAM_CA_FILE"),
		CADir:            get("CA_DIR"),
		CAExportDir:      get("CA_EXPORT_DIR"),
		LogDir:           get("LOG_DIR"),
		LogMaxSizeMB:     num("LOG_MAX_SIZE_MB"),
		LogMaxBackups:    num("LOG_MAX_BACKUPS"),
		LogMaxAgeDays:    num("LOG_MAX_AGE_DAYS"),
		LogCompress:      boolean("LOG_COMPRESS"),
		Secrets:          map[string]string{},

		InboundTLSCert:      get("INBOUND_TLS_CERT"),
		InboundTLSKey:       get("INBOUND_TLS_KEY"),
		InboundHostnames:    splitList(get("INBOUND_HOSTNAMES")),
		InboundFilterFile:   get("INBOUND_FILTER_FILE"),
		InboundFilterBytes:  num("INBOUND_FILTER_BYTES"),
		InboundMaxBodyMB:    num("INBOUND_MAX_BODY_MB"),
		Mode:                get("MODE"),
		FlowStdout:          get("FLOW_STDOUT"),
		LeakGuard:           get("LEAK_GUARD"),
		DashboardToken:      get("DASHBOARD_TOKEN"),
		StateDir:            get("STATE_DIR"),
		FlowBuffer:          num("FLOW_BUFFER"),
		WebhookURL:          get("WEBHOOK_URL"),
		WebhookSecret:       get("WEBHOOK_SECRET"),
		WebhookDedupSeconds: num("WEBHOOK_DEDUP_SECONDS"),
	}
	for _, s := range splitList(get("DASHBOARD_LOCAL_UIDS")) {
		uid, err := strconv.Atoi(s)
		if err != nil || uid < 0 || uid > math.MaxUint32 {
			errs = append(errs, fmt.Errorf("DASHBOARD_LOCAL_UIDS: %q is not a uid", s))
			continue
		}
		c.DashboardLocalUIDs = append(c.DashboardLocalUIDs, uid)
	}
	for _, s := range splitList(get("INBOUND_ALLOW_CIDRS")) {
		p, err := parsePrefix(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("INBOUND_ALLOW_CIDRS: %q is not a CIDR range (want e.g. 203.0.113.0/24 or 2001:db8::/32)", s))
			continue
		}
		c.InboundAllowCIDRs = append(c.InboundAllowCIDRs, p)
	}
	for _, s := range splitList(get("ALLOW_PRIVATE_CIDRS")) {
		p, err := parsePrefix(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("ALLOW_PRIVATE_CIDRS: %q is not a CIDR range (want e.g. 10.1.0.0/16 or fd00::/8)", s))
			continue
		}
		c.AllowPrivateCIDRs = append(c.AllowPrivateCIDRs, p)
	}
	for k, v := range vars {
		if strings.HasPrefix(k, SecretPrefix) {
			c.Secrets[k] = v
		}
	}
	return c, errors.Join(errs...)
}

func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Ports returns every listening port by the variable that sets it.
func (c Config) Ports() map[string]int {
	return map[string]int{
		"INBOUND_HTTPS_PORT": c.InboundHTTPSPort,
		"INBOUND_WSS_PORT":   c.InboundWSSPort,
		"APP_HTTP_PORT":      c.AppHTTPPort,
		"APP_WS_PORT":        c.AppWSPort,
		"DASHBOARD_PORT":     c.DashboardPort,
		"TRANSPARENT_PORT":   c.TransparentPort,
		"DNS_PORT":           c.DNSPort,
	}
}

// Validate checks ranges, that every port is distinct (a clash names both
// variables) and that the paths and the upstream resolver are usable.
func (c Config) Validate() error {
	var errs []error
	ports := c.Ports()
	names := make([]string, 0, len(ports))
	for n := range ports {
		names = append(names, n)
	}
	sort.Strings(names)
	seen := map[int]string{}
	for _, n := range names {
		p := ports[n]
		if p < 1 || p > 65535 {
			errs = append(errs, fmt.Errorf("%s=%d: port out of range 1-65535", n, p))
			continue
		}
		if other, ok := seen[p]; ok {
			errs = append(errs, fmt.Errorf("%s and %s are both %d: every port must be distinct", other, n, p))
			continue
		}
		seen[p] = n
	}
	if c.DNSPort == 53 {
		errs = append(errs, fmt.Errorf("DNS_PORT=53: the app's DNS (port 53) is redirected here; pick another port such as 5353"))
	}
	if c.ProxyUID <= 0 {
		errs = append(errs, fmt.Errorf("PROXY_UID=%d: must be a non-root uid", c.ProxyUID))
	}
	if c.ProxyGID <= 0 {
		errs = append(errs, fmt.Errorf("PROXY_GID=%d: must be a non-root gid", c.ProxyGID))
	}
	for name, path := range map[string]string{"ALLOWLIST_FILE": c.AllowlistFile, "CA_DIR": c.CADir, "CA_EXPORT_DIR": c.CAExportDir, "LOG_DIR": c.LogDir} {
		if path == "" {
			errs = append(errs, fmt.Errorf("%s: must not be empty", name))
		}
	}
	if c.UpstreamDNS != "" {
		if _, _, err := net.SplitHostPort(c.UpstreamDNS); err != nil {
			if _, err := netip.ParseAddr(c.UpstreamDNS); err != nil {
				errs = append(errs, fmt.Errorf("UPSTREAM_DNS=%q: want an address such as 1.1.1.1 or 1.1.1.1:53", c.UpstreamDNS))
			}
		}
	}
	if c.UpstreamCAFile != "" {
		if _, err := os.Stat(c.UpstreamCAFile); err != nil {
			errs = append(errs, fmt.Errorf("UPSTREAM_CA_FILE: %w", err))
		}
	}
	if c.LogMaxSizeMB < 1 {
		errs = append(errs, fmt.Errorf("LOG_MAX_SIZE_MB=%d: must be at least 1", c.LogMaxSizeMB))
	}
	if c.LogMaxBackups < 0 {
		errs = append(errs, fmt.Errorf("LOG_MAX_BACKUPS=%d: must not be negative", c.LogMaxBackups))
	}
	if c.LogMaxAgeDays < 0 {
		errs = append(errs, fmt.Errorf("LOG_MAX_AGE_DAYS=%d: must not be negative", c.LogMaxAgeDays))
	}
	for _, uid := range c.DashboardLocalUIDs {
		if uid == c.ProxyUID {
			// Without the mark, the proxy's uid is what an app that becomes
			// uid PROXY_UID would use to reach the dashboard.
			errs = append(errs, fmt.Errorf("DASHBOARD_LOCAL_UIDS: %d is PROXY_UID; panopticon reaches its dashboard anyway, and allowing the uid alone would let an app that becomes it in", uid))
		}
	}
	switch c.Mode {
	case "enforce", "audit":
	default:
		errs = append(errs, fmt.Errorf("MODE=%q: want enforce or audit", c.Mode))
	}
	switch c.FlowStdout {
	case "text", "json", "off":
	default:
		errs = append(errs, fmt.Errorf("FLOW_STDOUT=%q: want text, json or off", c.FlowStdout))
	}
	switch c.LeakGuard {
	case "log", "block", "off":
	default:
		errs = append(errs, fmt.Errorf("LEAK_GUARD=%q: want log, block or off", c.LeakGuard))
	}
	if (c.InboundTLSCert == "") != (c.InboundTLSKey == "") {
		errs = append(errs, fmt.Errorf("INBOUND_TLS_CERT and INBOUND_TLS_KEY must be set together"))
	}
	if len(c.InboundHostnames) == 0 {
		errs = append(errs, fmt.Errorf("INBOUND_HOSTNAMES: name at least one host, e.g. localhost"))
	}
	if c.InboundFilterBytes < 0 {
		errs = append(errs, fmt.Errorf("INBOUND_FILTER_BYTES=%d: must not be negative", c.InboundFilterBytes))
	}
	if c.InboundMaxBodyMB < 1 {
		errs = append(errs, fmt.Errorf("INBOUND_MAX_BODY_MB=%d: must be at least 1", c.InboundMaxBodyMB))
	}
	if c.FlowBuffer < 1 {
		errs = append(errs, fmt.Errorf("FLOW_BUFFER=%d: must be at least 1", c.FlowBuffer))
	}
	if c.WebhookDedupSeconds < 0 {
		errs = append(errs, fmt.Errorf("WEBHOOK_DEDUP_SECONDS=%d: must not be negative", c.WebhookDedupSeconds))
	}
	if c.WebhookURL != "" && !strings.HasPrefix(c.WebhookURL, "https://") && !strings.HasPrefix(c.WebhookURL, "http://") {
		errs = append(errs, fmt.Errorf("WEBHOOK_URL=%q: want an http:// or https:// URL", c.WebhookURL))
	}
	if c.StateDir == "" {
		errs = append(errs, fmt.Errorf("STATE_DIR: must not be empty"))
	}
	return errors.Join(errs...)
}

// ResolveUpstreamDNS returns UPSTREAM_DNS as host:port, falling back to the
// first nameserver of resolvConf (normally /etc/resolv.conf).
func (c Config) ResolveUpstreamDNS(resolvConf string) (string, error) {
	if c.UpstreamDNS != "" {
		if _, _, err := net.SplitHostPort(c.UpstreamDNS); err == nil {
			return c.UpstreamDNS, nil
		}
		return net.JoinHostPort(c.UpstreamDNS, "53"), nil
	}
	f, err := os.Open(resolvConf)
	if err != nil {
		return "", fmt.Errorf("UPSTREAM_DNS is unset and %s cannot be read: %w", resolvConf, err)
	}
	defer f.Close()
	var first netip.Addr
	var external []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) >= 2 && fields[0] == "nameserver" && !first.IsValid() {
			if a, err := netip.ParseAddr(fields[1]); err == nil {
				first = a
			}
		}
		if rest, ok := strings.CutPrefix(line, "# ExtServers:"); ok {
			external = strings.Fields(strings.Trim(strings.TrimSpace(rest), "[]"))
		}
	}
	if !first.IsValid() {
		return "", fmt.Errorf("UPSTREAM_DNS is unset and %s names no nameserver; set UPSTREAM_DNS", resolvConf)
	}
	if first == dockerResolver {
		// Docker's embedded resolver forwards from *this* namespace (unless
		// the host's resolver is on loopback, written "host(…)"): its
		// queries would be redirected back to our DNS door and loop. Ask
		// the servers it forwards to instead.
		for _, e := range external {
			if a, err := netip.ParseAddr(e); err == nil {
				return net.JoinHostPort(a.String(), "53"), nil
			}
			if ap, err := netip.ParseAddrPort(e); err == nil {
				return ap.String(), nil
			}
		}
	}
	return net.JoinHostPort(first.String(), "53"), nil
}

// dockerResolver is the embedded DNS server Docker puts in containers' resolv.conf.
var dockerResolver = netip.MustParseAddr("127.0.0.11")
