package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// settings are the knobs of one run; quick mode shortens everything.
type settings struct {
	Quick        bool          `json:"quick"`
	Rounds       int           `json:"rounds"`
	KeepAlive    time.Duration `json:"keepalive_duration_ns"`
	NewConn      time.Duration `json:"newconn_duration_ns"`
	NewConnConc  int           `json:"newconn_concurrency"`
	BulkBytes    int64         `json:"bulk_bytes"`
	IdleConns    int           `json:"idle_conns"`
	IdleOpenFor  time.Duration `json:"idle_open_for_ns"`
	DNS          time.Duration `json:"dns_duration_ns"`
	DNSWorkers   int           `json:"dns_workers"`
	ScaleSizes   []int         `json:"scale_sizes"`
	Scale        time.Duration `json:"scale_duration_ns"`
	WrkThreads   int           `json:"wrk_threads"`
	WrkConns     int           `json:"wrk_conns"`
	Placeholders int64         `json:"placeholder_every_bytes"`
}

func defaultSettings(quick bool) settings {
	s := settings{
		Rounds: 3, KeepAlive: 10 * time.Second, NewConn: 5 * time.Second, NewConnConc: 8,
		BulkBytes: 100 << 20, IdleConns: 10000, IdleOpenFor: 60 * time.Second,
		DNS: 5 * time.Second, DNSWorkers: 2, ScaleSizes: []int{10, 10000, 100000},
		Scale: 10 * time.Second, WrkThreads: 2, WrkConns: 32, Placeholders: 64 << 10,
	}
	if quick {
		s.Quick = true
		s.Rounds = 1
		s.KeepAlive, s.NewConn, s.DNS, s.Scale = 3*time.Second, 2*time.Second, 2*time.Second, 3*time.Second
		s.BulkBytes = 32 << 20
		s.IdleConns, s.IdleOpenFor = 2000, 20*time.Second
	}
	return s
}

// measurement is one load against one subject in one round.
type measurement struct {
	Phase   string             `json:"phase"`
	Variant string             `json:"variant,omitempty"`
	Subject string             `json:"subject"`
	Round   int                `json:"round"`
	Metrics map[string]float64 `json:"metrics"`
	Errors  int64              `json:"errors"`
	Error   string             `json:"error,omitempty"`
	Proxy   *procUsage         `json:"proxy,omitempty"`
}

type runner struct {
	ctx      context.Context
	set      settings
	self     string
	dir      string
	upCA     string
	subjects []*subject
	pano     *subject
	panoOpts *panoOpts
	results  []measurement
	log      io.Writer
}

func runCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	panoBin := fs.String("panopticon", "bin/panopticon", "panopticon binary")
	out := fs.String("out", "bench/out", "output directory")
	quick := fs.Bool("quick", os.Getenv("BENCH_QUICK") == "1", "short run (BENCH_QUICK=1)")
	only := fs.String("subjects", "direct,panopticon,mitmproxy,squid", "subjects to run")
	phases := fs.String("phases", "keepalive,newconn,download,upload,dns,idle,scaling", "phases to run")
	readme := fs.String("readme", "", "README whose BENCH markers receive the table")
	gobench := fs.String("gobench", "", "output of the in-process Go benchmarks to include")
	baseline := fs.String("baseline", "", "a panopticon binary from another revision, run beside this one as subject \"baseline\"")
	_ = fs.Parse(args)

	if os.Geteuid() != 0 {
		return fmt.Errorf("run needs root (network namespaces, iptables)")
	}
	bin, err := filepath.Abs(*panoBin)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	// 10,000 idle connections: raise the soft limit to the hard one for
	// every process we start (a container may cap the hard limit).
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raising RLIMIT_NOFILE: %w", err)
	}
	if lim.Max < 21000 {
		fmt.Fprintf(os.Stderr, "panobench: RLIMIT_NOFILE hard limit is %d; proxies that hold two sockets per client connection cap the idle test below 10,000\n", lim.Max)
	}
	dir, err := os.MkdirTemp("", "panobench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}

	r := &runner{ctx: ctx, set: defaultSettings(*quick), self: self, dir: dir, log: os.Stderr}
	started := time.Now()
	tb, err := newTestbed(dir)
	defer tb.close()
	if err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	if r.upCA, err = writeUpstreamCerts(dir); err != nil {
		return err
	}
	up := exec.Command("ip", "netns", "exec", netNS, self, "upstream", "-dir", dir)
	up.Stderr = os.Stderr
	up.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	upOut, _ := up.StdoutPipe()
	if err := up.Start(); err != nil {
		return err
	}
	defer func() { _ = up.Process.Signal(syscall.SIGTERM); _ = up.Wait() }()
	if line, _ := bufio.NewReader(upOut).ReadString('\n'); strings.TrimSpace(line) != "ready" {
		return fmt.Errorf("upstream did not start (%q)", line)
	}

	want := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		want[strings.TrimSpace(s)] = true
	}
	r.panoOpts = &panoOpts{bin: bin, upstreamCAFile: r.upCA, entries: r.set.ScaleSizes[0]}
	all := []*subject{
		newDirect("bench-direct", r.upCA),
		newPanopticon(subjPano, "bench-pano", dir, r.panoOpts),
		newMitmproxy("bench-mitm", dir, r.upCA),
		newSquid("bench-squid", dir, r.upCA),
	}
	if *baseline != "" {
		baseBin, err := filepath.Abs(*baseline)
		if err != nil {
			return err
		}
		baseOpts := *r.panoOpts
		baseOpts.bin = baseBin
		all = append(all, newPanopticon(subjBase, "bench-base", dir, &baseOpts))
		want[subjBase] = true
	}
	for i, s := range all {
		if !want[s.name] {
			continue
		}
		if err := tb.addPod(s.pod, i); err != nil {
			return fmt.Errorf("pod %s: %w", s.pod, err)
		}
		r.logf("starting %s in %s", s.name, s.pod)
		if err := s.start(s); err != nil {
			return err
		}
		defer s.stop()
		r.subjects = append(r.subjects, s)
		if s.name == subjPano {
			r.pano = s
		}
	}
	for _, s := range r.subjects {
		if err := r.smoke(s); err != nil {
			return fmt.Errorf("%s does not pass a request: %w", s.name, err)
		}
	}

	for _, ph := range strings.Split(*phases, ",") {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch strings.TrimSpace(ph) {
		case "keepalive":
			r.phaseKeepAlive()
		case "newconn":
			r.phaseNewConn()
		case "download":
			r.phaseDownload()
		case "upload":
			r.phaseUpload()
		case "dns":
			r.phaseDNS()
		case "idle":
			r.phaseIdle()
		case "scaling":
			r.phaseScaling()
		default:
			return fmt.Errorf("unknown phase %q", ph)
		}
	}

	rep := buildReport(r, started)
	if *gobench != "" {
		if data, err := os.ReadFile(*gobench); err == nil {
			rep.GoBench = parseGoBench(string(data))
		}
	}
	return rep.write(*out, *readme)
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.log, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// rotated returns the subjects starting at round r, so no subject always
// runs first (or right after the most expensive one).
func rotated[T any](xs []T, round int) []T {
	if len(xs) == 0 {
		return nil
	}
	k := round % len(xs)
	return append(append([]T{}, xs[k:]...), xs[:k]...)
}

// load runs `panobench load` in the subject's pod and decodes its result.
func (r *runner) load(s *subject, timeout time.Duration, args ...string) (loadResult, error) {
	ctx, cancel := context.WithTimeout(r.ctx, timeout)
	defer cancel()
	argv := append([]string{"netns", "exec", s.pod, r.self, "load", "-ca", s.caFile}, args...)
	cmd := exec.CommandContext(ctx, "ip", argv...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return loadResult{}, fmt.Errorf("load %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	var res loadResult
	if err := json.Unmarshal(out, &res); err != nil {
		return loadResult{}, fmt.Errorf("load output %q: %w", out, err)
	}
	return res, nil
}

// smoke checks that one new-connection request goes through s.
func (r *runner) smoke(s *subject) error {
	res, err := r.load(s, 30*time.Second, "-mode", "newconn", "-c", "1", "-d", "1s")
	if err != nil {
		return err
	}
	if res.Ops == 0 {
		return fmt.Errorf("no request succeeded: %s", res.FirstErr)
	}
	return nil
}

// measure runs f while sampling the subject's process tree.
func (r *runner) measure(phase, variant string, s *subject, round int, f func() (map[string]float64, int64, error)) {
	time.Sleep(500 * time.Millisecond) // let the previous load's connections drain
	smp := startSampler(s.pid())
	m, nerr, err := f()
	mm := measurement{Phase: phase, Variant: variant, Subject: s.name, Round: round, Metrics: m, Errors: nerr, Proxy: smp.finish()}
	if err != nil {
		mm.Error = err.Error()
	}
	r.results = append(r.results, mm)
	line := fmt.Sprintf("%-10s %-14s %-11s round %d:", phase, variant, s.name, round)
	for _, k := range sortedKeys(m) {
		line += fmt.Sprintf(" %s=%.4g", k, m[k])
	}
	if mm.Proxy != nil {
		line += fmt.Sprintf(" | peak RSS %.1f MiB, CPU %.2f cores", mm.Proxy.PeakRSSMiB, mm.Proxy.CPUCores)
	}
	if nerr > 0 || err != nil {
		line += fmt.Sprintf(" | errors=%d %v", nerr, err)
	}
	r.logf("%s", line)
}

func (r *runner) phaseKeepAlive() {
	for round := range r.set.Rounds {
		for _, s := range rotated(r.subjects, round) {
			r.measure("keepalive", "", s, round, func() (map[string]float64, int64, error) {
				w, _, err := runWrk(r.ctx, s.pod, "https://"+benchHost+"/", r.set.WrkThreads, r.set.WrkConns, r.set.KeepAlive)
				if err != nil {
					return nil, 1, err
				}
				var e error
				if w.FirstErr != "" {
					e = fmt.Errorf("%s", w.FirstErr)
				}
				return map[string]float64{"per_sec": w.PerSec, "p50_ms": w.P50MS, "p99_ms": w.P99MS}, w.Errors, e
			})
		}
	}
}

func (r *runner) phaseNewConn() {
	for _, v := range []struct {
		variant, host string
		resume        bool
	}{{"resumed", benchHost, true}, {"full", noResumeHost, false}} {
		for round := range r.set.Rounds {
			for _, s := range rotated(r.subjects, round) {
				r.measure("newconn", v.variant, s, round, func() (map[string]float64, int64, error) {
					res, err := r.load(s, r.set.NewConn+60*time.Second, "-mode", "newconn", "-host", v.host,
						"-resume="+strconv.FormatBool(v.resume), "-c", strconv.Itoa(r.set.NewConnConc), "-d", r.set.NewConn.String())
					return resultMetrics(res, err)
				})
			}
		}
	}
}

func resultMetrics(res loadResult, err error) (map[string]float64, int64, error) {
	if err != nil {
		return nil, 1, err
	}
	m := map[string]float64{}
	if res.PerSec > 0 {
		m["per_sec"] = res.PerSec
	}
	if res.P50MS > 0 {
		m["p50_ms"], m["p99_ms"] = res.P50MS, res.P99MS
	}
	if res.MBps > 0 {
		m["mb_per_sec"] = res.MBps
	}
	var e error
	if res.FirstErr != "" {
		e = fmt.Errorf("%s", res.FirstErr)
	}
	return m, res.Errors, e
}

func (r *runner) phaseDownload() {
	for round := range r.set.Rounds {
		for _, s := range rotated(r.subjects, round) {
			r.measure("download", "", s, round, func() (map[string]float64, int64, error) {
				return resultMetrics(r.load(s, 5*time.Minute, "-mode", "download", "-bytes", strconv.FormatInt(r.set.BulkBytes, 10)))
			})
		}
	}
}

func (r *runner) phaseUpload() {
	ph := strings.TrimPrefix(secretName, "") // the placeholder is the variable's name
	count := placeholderCount(r.set.BulkBytes, r.set.Placeholders, ph, 64<<10)
	for _, v := range []struct {
		variant, placeholder string
	}{{"plain", ""}, {"placeholders", ph}} {
		for round := range r.set.Rounds {
			for _, s := range rotated(r.subjects, round) {
				r.measure("upload", v.variant, s, round, func() (map[string]float64, int64, error) {
					res, err := r.load(s, 5*time.Minute, "-mode", "upload", "-host", secretHost,
						"-bytes", strconv.FormatInt(r.set.BulkBytes, 10), "-placeholder", v.placeholder,
						"-every", strconv.FormatInt(r.set.Placeholders, 10))
					m, n, e := resultMetrics(res, err)
					if err == nil && res.Errors == 0 {
						want := r.set.BulkBytes
						if isPanopticon(s) && v.placeholder != "" {
							want += count * int64(len(secretValue)-len(ph))
						}
						if res.Received != want {
							n++
							e = fmt.Errorf("upstream read %d bytes, want %d (substitution check)", res.Received, want)
						}
					}
					return m, n, e
				})
			}
		}
	}
}

func (r *runner) phaseDNS() {
	var subs []*subject
	for _, s := range r.subjects {
		if s.name == subjDirect || isPanopticon(s) {
			subs = append(subs, s) // the anchors have no DNS listener
		}
	}
	for round := range r.set.Rounds {
		for _, s := range rotated(subs, round) {
			r.measure("dns", "", s, round, func() (map[string]float64, int64, error) {
				return resultMetrics(r.load(s, r.set.DNS+30*time.Second, "-mode", "dns", "-workers", strconv.Itoa(r.set.DNSWorkers), "-d", r.set.DNS.String()))
			})
		}
	}
}

// phaseIdle opens many keep-alive connections and divides the proxy's RSS
// growth by their number. Once per subject: it takes long for the anchors.
func (r *runner) phaseIdle() {
	for _, s := range r.subjects {
		if s.pid() == 0 {
			continue // direct: no proxy to weigh
		}
		r.measure("idle", "", s, 0, func() (map[string]float64, int64, error) {
			return r.idleOnce(s)
		})
	}
}

func (r *runner) idleOnce(s *subject) (map[string]float64, int64, error) {
	time.Sleep(2 * time.Second)
	pids := procTree(s.pid())
	before := treeRSS(pids)
	ctx, cancel := context.WithTimeout(r.ctx, r.set.IdleOpenFor+2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", s.pod, r.self, "load", "-ca", s.caFile, "-mode", "idle",
		"-n", strconv.Itoa(r.set.IdleConns), "-c", "64", "-open-for", r.set.IdleOpenFor.String())
	stdin, _ := cmd.StdinPipe()
	stderr, _ := cmd.StderrPipe()
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		return nil, 1, err
	}
	var ready int
	var tail []string
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if n, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
			ready, _ = strconv.Atoi(n)
			break
		}
		tail = append(tail, sc.Text())
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	time.Sleep(3 * time.Second) // let the proxy settle
	after := treeRSS(procTree(s.pid()))
	stdin.Close()
	err := cmd.Wait()
	if err != nil {
		return nil, 1, fmt.Errorf("idle load: %v: %s", err, strings.Join(tail, "; "))
	}
	var res loadResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return nil, 1, err
	}
	m := map[string]float64{"conns": float64(ready), "alive": float64(res.Open), "open_per_sec": res.PerSec,
		"rss_before_mib": float64(before) / 1024, "rss_after_mib": float64(after) / 1024}
	if ready > 0 {
		m["kib_per_conn"] = float64(after-before) / float64(ready)
	}
	var e error
	if res.FirstErr != "" {
		e = fmt.Errorf("%s", res.FirstErr)
	}
	return m, res.Errors, e
}

// phaseScaling restarts panopticon with allowlists of each size and runs
// the keep-alive load against each.
func (r *runner) phaseScaling() {
	if r.pano == nil {
		return
	}
	for round := range r.set.Rounds {
		for _, n := range rotated(r.set.ScaleSizes, round) {
			r.pano.stop()
			r.panoOpts.entries = n
			if err := r.pano.start(r.pano); err != nil {
				r.results = append(r.results, measurement{Phase: "scaling", Variant: "entries=" + strconv.Itoa(n), Subject: subjPano, Round: round, Error: err.Error(), Errors: 1})
				r.logf("scaling: restarting panopticon with %d entries: %v", n, err)
				continue
			}
			time.Sleep(2 * time.Second)
			idle := float64(treeRSS([]int{r.pano.pid()})) / 1024
			r.measure("scaling", "entries="+strconv.Itoa(n), r.pano, round, func() (map[string]float64, int64, error) {
				w, _, err := runWrk(r.ctx, r.pano.pod, "https://"+benchHost+"/", r.set.WrkThreads, r.set.WrkConns, r.set.Scale)
				if err != nil {
					return nil, 1, err
				}
				return map[string]float64{"per_sec": w.PerSec, "p50_ms": w.P50MS, "p99_ms": w.P99MS, "idle_rss_mib": idle, "entries": float64(n)}, w.Errors, nil
			})
		}
	}
}
