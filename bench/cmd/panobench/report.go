package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// report is what a run writes to results-<timestamp>.json.
type report struct {
	Started  time.Time          `json:"started"`
	Finished time.Time          `json:"finished"`
	Machine  map[string]string  `json:"machine"`
	Settings settings           `json:"settings"`
	Runs     []measurement      `json:"runs"`
	Summary  []summaryRow       `json:"summary"`
	Targets  []targetResult     `json:"targets"`
	GoBench  []goBenchResult    `json:"go_bench,omitempty"`
	Notes    []string           `json:"notes"`
	index    map[string]summary // phase/variant/subject → medians
}

// summary is the median over rounds of every metric of one cell.
type summary struct {
	Metrics map[string]float64 `json:"metrics"`
	PeakRSS float64            `json:"peak_rss_mib,omitempty"`
	CPU     float64            `json:"cpu_cores,omitempty"`
	Rounds  int                `json:"rounds"`
	Errors  int64              `json:"errors"`
	Error   string             `json:"error,omitempty"`
}

type summaryRow struct {
	Phase   string `json:"phase"`
	Variant string `json:"variant,omitempty"`
	Subject string `json:"subject"`
	summary
}

type targetResult struct {
	Target string  `json:"target"`
	Value  string  `json:"value"`
	Ratio  float64 `json:"ratio,omitempty"`
	Pass   bool    `json:"pass"`
	Known  bool    `json:"measured"`
}

type goBenchResult struct {
	Name    string             `json:"name"`
	Metrics map[string]float64 `json:"metrics"`
}

func key(phase, variant, subject string) string { return phase + "/" + variant + "/" + subject }

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func buildReport(r *runner, started time.Time) *report {
	rep := &report{Started: started, Finished: time.Now(), Machine: machineInfo(), Settings: r.set, Runs: r.results}
	rep.summarize()
	rep.evaluate()
	rep.Notes = []string{
		"Client, proxy and upstream share the machine's cores; absolute figures move ±20 % between sittings, ratios within one run are what to compare.",
		"wrk does not verify certificates (it speaks TLS through OpenSSL without a trust store); the Go clients verify the proxy's CA.",
		"new-connection 'resumed': the client keeps a TLS session cache and the upstream issues tickets; 'full': no client cache, upstream tickets off.",
		"upload goes to secret.test, a host with a panopticon secret: the body is streamed through the substitution path; 'placeholders' sprinkles one placeholder per 64 KiB and the upstream's byte count proves each was swapped.",
		"peak RSS is the highest 100 ms sample of VmRSS summed over the proxy's process tree during the load (squid: with its certificate helpers).",
	}
	return rep
}

func (rep *report) summarize() {
	type acc struct {
		metrics map[string][]float64
		rss     []float64
		cpu     []float64
		n       int
		errs    int64
		err     string
	}
	accs := map[string]*acc{}
	var order []string
	for _, m := range rep.Runs {
		k := key(m.Phase, m.Variant, m.Subject)
		a := accs[k]
		if a == nil {
			a = &acc{metrics: map[string][]float64{}}
			accs[k] = a
			order = append(order, k)
		}
		a.n++
		a.errs += m.Errors
		if m.Error != "" && a.err == "" {
			a.err = m.Error
		}
		for mk, v := range m.Metrics {
			a.metrics[mk] = append(a.metrics[mk], v)
		}
		if m.Proxy != nil {
			a.rss = append(a.rss, m.Proxy.PeakRSSMiB)
			a.cpu = append(a.cpu, m.Proxy.CPUCores)
		}
	}
	rep.index = map[string]summary{}
	for _, k := range order {
		a := accs[k]
		s := summary{Metrics: map[string]float64{}, Rounds: a.n, Errors: a.errs, Error: a.err}
		for mk, vs := range a.metrics {
			s.Metrics[mk] = median(vs)
		}
		s.PeakRSS, s.CPU = median(a.rss), median(a.cpu)
		rep.index[k] = s
		parts := strings.SplitN(k, "/", 3)
		rep.Summary = append(rep.Summary, summaryRow{Phase: parts[0], Variant: parts[1], Subject: parts[2], summary: s})
	}
}

func (rep *report) get(phase, variant, subject, metric string) (float64, bool) {
	s, ok := rep.index[key(phase, variant, subject)]
	if !ok {
		return 0, false
	}
	v, ok := s.Metrics[metric]
	return v, ok && v > 0
}

// evaluate checks the targets (ratios within this run).
func (rep *report) evaluate() {
	ratio := func(name, phase, variant, metric string, min float64) {
		p, ok1 := rep.get(phase, variant, subjPano, metric)
		d, ok2 := rep.get(phase, variant, subjDirect, metric)
		t := targetResult{Target: name, Known: ok1 && ok2}
		if t.Known {
			t.Ratio = p / d
			t.Pass = t.Ratio >= min
			t.Value = fmt.Sprintf("%.2f × direct (%s vs %s)", t.Ratio, num(p), num(d))
		}
		rep.Targets = append(rep.Targets, t)
	}
	ratio("keep-alive throughput ≥ 0.5 × direct", "keepalive", "", "per_sec", 0.5)
	for _, anchor := range []struct {
		name string
		min  float64
	}{{subjMitm, 40}, {subjSquid, 2.5}} {
		p, ok1 := rep.get("keepalive", "", subjPano, "per_sec")
		a, ok2 := rep.get("keepalive", "", anchor.name, "per_sec")
		t := targetResult{Target: fmt.Sprintf("keep-alive throughput ≥ %g × %s", anchor.min, anchor.name), Known: ok1 && ok2}
		if t.Known {
			t.Ratio = p / a
			t.Pass = t.Ratio >= anchor.min
			t.Value = fmt.Sprintf("%.1f × %s", t.Ratio, anchor.name)
		}
		rep.Targets = append(rep.Targets, t)
	}
	{
		p, ok1 := rep.get("keepalive", "", subjPano, "p50_ms")
		d, ok2 := rep.get("keepalive", "", subjDirect, "p50_ms")
		t := targetResult{Target: "keep-alive p50 ≤ direct + 0.5 ms", Known: ok1 && ok2}
		if t.Known {
			t.Pass = p <= d+0.5
			t.Value = fmt.Sprintf("%.2f ms vs %.2f ms (+%.2f ms)", p, d, p-d)
		}
		rep.Targets = append(rep.Targets, t)
	}
	ratio("new TLS connections/s ≥ 0.7 × direct (resumed)", "newconn", "resumed", "per_sec", 0.7)
	ratio("new TLS connections/s ≥ 0.7 × direct (full handshakes)", "newconn", "full", "per_sec", 0.7)
	ratio("download ≥ 0.8 × direct", "download", "", "mb_per_sec", 0.8)
	ratio("upload ≥ 0.8 × direct (secret path, no placeholder)", "upload", "plain", "mb_per_sec", 0.8)
	ratio("upload ≥ 0.8 × direct (secret path, placeholders)", "upload", "placeholders", "mb_per_sec", 0.8)
	{
		s, ok := rep.index[key("keepalive", "", subjPano)]
		t := targetResult{Target: "proxy RSS ≤ 40 MiB under the keep-alive load", Known: ok && s.PeakRSS > 0}
		if t.Known {
			t.Pass = s.PeakRSS <= 40
			t.Value = fmt.Sprintf("%.1f MiB peak", s.PeakRSS)
		}
		rep.Targets = append(rep.Targets, t)
	}
	{
		v, ok := rep.get("idle", "", subjPano, "kib_per_conn")
		n, _ := rep.get("idle", "", subjPano, "conns")
		t := targetResult{Target: "≤ 64 KiB per idle client connection", Known: ok}
		if t.Known {
			t.Pass = v <= 64
			t.Value = fmt.Sprintf("%.1f KiB (%d connections)", v, int(n))
		}
		rep.Targets = append(rep.Targets, t)
	}
	{
		big, ok1 := rep.get("scaling", "entries=100000", subjPano, "per_sec")
		small, ok2 := rep.get("scaling", "entries=10", subjPano, "per_sec")
		t := targetResult{Target: "100,000-entry allowlist: throughput within 5 % of 10 entries", Known: ok1 && ok2}
		if t.Known {
			t.Ratio = big / small
			t.Pass = t.Ratio >= 0.95
			t.Value = fmt.Sprintf("%.3f × (%s vs %s req/s)", t.Ratio, num(big), num(small))
		}
		rep.Targets = append(rep.Targets, t)
	}
	{
		big, ok1 := rep.get("scaling", "entries=100000", subjPano, "idle_rss_mib")
		small, ok2 := rep.get("scaling", "entries=10", subjPano, "idle_rss_mib")
		t := targetResult{Target: "≤ 200 bytes per allowlist entry (idle RSS delta, 10 → 100,000)", Known: ok1 && ok2}
		if t.Known {
			per := (big - small) * 1024 * 1024 / (100000 - 10)
			t.Pass = per <= 200
			t.Value = fmt.Sprintf("%.0f bytes/entry (%.1f → %.1f MiB)", per, small, big)
		}
		rep.Targets = append(rep.Targets, t)
	}
}

func num(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// ---- tables ----

type column struct {
	header string
	metric string // metric key; "rss" and "cpu" are the proxy's
}

type table struct {
	title    string
	phase    string
	variant  string
	primary  string // metric the ratio columns divide
	cols     []column
	subjects []string
}

var allSubjects = []string{subjDirect, subjPano, subjBase, subjMitm, subjSquid}

func tables(set settings) []table {
	ka := []column{{"req/s", "per_sec"}, {"p50 ms", "p50_ms"}, {"p99 ms", "p99_ms"}, {"peak RSS MiB", "rss"}, {"CPU cores", "cpu"}}
	bulk := []column{{"MB/s", "mb_per_sec"}, {"peak RSS MiB", "rss"}, {"CPU cores", "cpu"}}
	return []table{
		{title: fmt.Sprintf("keep-alive, 100-byte responses (wrk -t%d -c%d, %s)", set.WrkThreads, set.WrkConns, set.KeepAlive), phase: "keepalive", primary: "per_sec", cols: ka, subjects: allSubjects},
		{title: fmt.Sprintf("new TLS connection per request, resumed (%d clients)", set.NewConnConc), phase: "newconn", variant: "resumed", primary: "per_sec", cols: ka, subjects: allSubjects},
		{title: fmt.Sprintf("new TLS connection per request, full handshakes (%d clients)", set.NewConnConc), phase: "newconn", variant: "full", primary: "per_sec", cols: ka, subjects: allSubjects},
		{title: fmt.Sprintf("download %d MiB", set.BulkBytes>>20), phase: "download", primary: "mb_per_sec", cols: bulk, subjects: allSubjects},
		{title: fmt.Sprintf("upload %d MiB, no placeholder (panopticon: secret path)", set.BulkBytes>>20), phase: "upload", variant: "plain", primary: "mb_per_sec", cols: bulk, subjects: allSubjects},
		{title: fmt.Sprintf("upload %d MiB, a placeholder every %d KiB (panopticon swaps them)", set.BulkBytes>>20, set.Placeholders>>10), phase: "upload", variant: "placeholders", primary: "mb_per_sec", cols: bulk, subjects: allSubjects},
		{title: fmt.Sprintf("DNS, %d workers, one query outstanding each", set.DNSWorkers), phase: "dns", primary: "per_sec", cols: []column{{"queries/s", "per_sec"}, {"p50 ms", "p50_ms"}, {"p99 ms", "p99_ms"}, {"peak RSS MiB", "rss"}, {"CPU cores", "cpu"}}, subjects: []string{subjDirect, subjPano, subjBase}},
		{title: fmt.Sprintf("idle keep-alive connections (up to %d, opened within %s)", set.IdleConns, set.IdleOpenFor), phase: "idle", primary: "kib_per_conn", cols: []column{{"connections", "conns"}, {"still open", "alive"}, {"opened/s", "open_per_sec"}, {"RSS before MiB", "rss_before_mib"}, {"RSS after MiB", "rss_after_mib"}, {"KiB per conn", "kib_per_conn"}}, subjects: []string{subjPano, subjBase, subjMitm, subjSquid}},
	}
}

func (rep *report) cell(phase, variant, subject string, c column) string {
	s, ok := rep.index[key(phase, variant, subject)]
	if !ok {
		return "–"
	}
	var v float64
	switch c.metric {
	case "rss":
		v = s.PeakRSS
	case "cpu":
		v = s.CPU
	default:
		v = s.Metrics[c.metric]
	}
	if v == 0 {
		return "–"
	}
	return num(v)
}

func (rep *report) markdown() string {
	var b strings.Builder
	for _, t := range tables(rep.Settings) {
		if !rep.hasPhase(t.phase, t.variant) {
			continue
		}
		fmt.Fprintf(&b, "**%s**\n\n| subject |", t.title)
		for _, c := range t.cols {
			fmt.Fprintf(&b, " %s |", c.header)
		}
		ratioCols := []string{subjDirect, subjMitm, subjSquid}
		if t.phase == "idle" {
			ratioCols = []string{subjMitm, subjSquid}
		}
		if t.phase == "dns" {
			ratioCols = []string{subjDirect}
		}
		if rep.hasSubject(subjBase) {
			// The baseline build answers "did this change make it slower?"
			// within one run, where absolute figures do not drift.
			ratioCols = append(ratioCols, subjBase)
		}
		for _, rc := range ratioCols {
			fmt.Fprintf(&b, " × %s |", rc)
		}
		b.WriteString("\n|---|")
		b.WriteString(strings.Repeat("---|", len(t.cols)+len(ratioCols)))
		b.WriteString("\n")
		for _, subj := range t.subjects {
			if _, ok := rep.index[key(t.phase, t.variant, subj)]; !ok {
				continue
			}
			fmt.Fprintf(&b, "| %s |", subj)
			for _, c := range t.cols {
				fmt.Fprintf(&b, " %s |", rep.cell(t.phase, t.variant, subj, c))
			}
			for _, rc := range ratioCols {
				v, ok1 := rep.get(t.phase, t.variant, subj, t.primary)
				a, ok2 := rep.get(t.phase, t.variant, rc, t.primary)
				if !ok1 || !ok2 || rc == subj {
					b.WriteString(" |")
					continue
				}
				fmt.Fprintf(&b, " %s |", ratioText(v/a))
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}
	if rep.hasPhase("scaling", "entries=10") {
		b.WriteString("**panopticon with allowlists of growing size (keep-alive load)**\n\n| entries | req/s | p50 ms | idle RSS MiB | peak RSS MiB | × 10 entries |\n|---|---|---|---|---|---|\n")
		base, _ := rep.get("scaling", "entries=10", subjPano, "per_sec")
		for _, n := range rep.Settings.ScaleSizes {
			v := "entries=" + strconv.Itoa(n)
			s, ok := rep.index[key("scaling", v, subjPano)]
			if !ok {
				continue
			}
			r := ""
			if base > 0 {
				r = ratioText(s.Metrics["per_sec"] / base)
			}
			fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s |\n", n, num(s.Metrics["per_sec"]), num(s.Metrics["p50_ms"]), num(s.Metrics["idle_rss_mib"]), num(s.PeakRSS), r)
		}
		b.WriteString("\n")
	}
	var errs []string
	for _, row := range rep.Summary {
		if row.Errors > 0 || row.Error != "" {
			errs = append(errs, fmt.Sprintf("- %s %s %s: %d error(s), first: %s", row.Phase, row.Variant, row.Subject, row.Errors, row.Error))
		}
	}
	if len(errs) > 0 {
		b.WriteString("Errors during the run:\n\n" + strings.Join(errs, "\n") + "\n\n")
	}
	if len(rep.GoBench) > 0 {
		b.WriteString("**in-process Go benchmarks (`bench/egressbench_test.go`)**\n\n| benchmark | figures |\n|---|---|\n")
		for _, g := range rep.GoBench {
			var parts []string
			for _, k := range sortedKeys(g.Metrics) {
				parts = append(parts, fmt.Sprintf("%s %s", num(g.Metrics[k]), k))
			}
			fmt.Fprintf(&b, "| %s | %s |\n", g.Name, strings.Join(parts, ", "))
		}
		b.WriteString("\n")
	}
	b.WriteString("**targets (issue 9), as ratios within this run**\n\n| target | measured | |\n|---|---|---|\n")
	for _, t := range rep.Targets {
		verdict, value := "not measured", "–"
		if t.Known {
			value = t.Value
			verdict = "FAIL"
			if t.Pass {
				verdict = "pass"
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", t.Target, value, verdict)
	}
	return b.String()
}

func ratioText(r float64) string {
	switch {
	case r >= 10:
		return fmt.Sprintf("%.0f×", r)
	case r >= 1:
		return fmt.Sprintf("%.1f×", r)
	default:
		return fmt.Sprintf("%.2f×", r)
	}
}

func (rep *report) hasPhase(phase, variant string) bool {
	for _, s := range rep.Summary {
		if s.Phase == phase && s.Variant == variant {
			return true
		}
	}
	return false
}

func (rep *report) hasSubject(subject string) bool {
	for _, s := range rep.Summary {
		if s.Subject == subject {
			return true
		}
	}
	return false
}

func (rep *report) machineMarkdown() string {
	var b strings.Builder
	mode := "full"
	if rep.Settings.Quick {
		mode = "quick (BENCH_QUICK=1)"
	}
	fmt.Fprintf(&b, "Run of %s, %s mode, %d round(s) per cell (medians), %s.\n\n", rep.Started.UTC().Format("2006-01-02 15:04 UTC"), mode, rep.Settings.Rounds, rep.Finished.Sub(rep.Started).Round(time.Second))
	for _, k := range []string{"cpu", "nproc", "memory", "kernel", "go", "wrk", "mitmproxy", "squid", "panopticon", "baseline"} {
		if v := rep.Machine[k]; v != "" {
			fmt.Fprintf(&b, "- %s: %s\n", k, v)
		}
	}
	return b.String()
}

// write saves the JSON, the Markdown table, and updates the README.
func (rep *report) write(out, readme string) error {
	ts := rep.Started.UTC().Format("20060102-150405")
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	jsonPath := filepath.Join(out, "results-"+ts+".json")
	if err := os.WriteFile(jsonPath, data, 0o644); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(out, "latest.json"))
	_ = os.Symlink(filepath.Base(jsonPath), filepath.Join(out, "latest.json"))
	md := rep.machineMarkdown() + "\n" + rep.markdown()
	if err := os.WriteFile(filepath.Join(out, "table-"+ts+".md"), []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Println(md)
	fmt.Println("results:", jsonPath)
	if readme != "" {
		if err := replaceBetween(readme, "<!-- BENCH:BEGIN -->", "<!-- BENCH:END -->", md); err != nil {
			return err
		}
		fmt.Println("updated:", readme)
	}
	return nil
}

func replaceBetween(path, begin, end, content string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(data)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		return fmt.Errorf("%s: markers %s … %s not found", path, begin, end)
	}
	s = s[:i+len(begin)] + "\n" + content + "\n" + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}

// reportCmd re-renders the tables of a results JSON (after editing the code
// that draws them, say) without rerunning the benchmark.
func reportCmd(args []string) error {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	readme := fs.String("readme", "", "README to update")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		return errors.New("usage: panobench report [-readme FILE] results.json")
	}
	data, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	var rep report
	if err := json.Unmarshal(data, &rep); err != nil {
		return err
	}
	rep.Summary, rep.Targets = nil, nil
	rep.summarize()
	rep.evaluate()
	md := rep.machineMarkdown() + "\n" + rep.markdown()
	fmt.Println(md)
	if *readme != "" {
		return replaceBetween(*readme, "<!-- BENCH:BEGIN -->", "<!-- BENCH:END -->", md)
	}
	return nil
}

// ---- machine ----

func firstLine(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return ""
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(line)
}

func machineInfo() map[string]string {
	m := map[string]string{"nproc": strconv.Itoa(runtime.NumCPU()), "goarch": runtime.GOARCH}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				m["cpu"] = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(data), "\n")
		f := strings.Fields(line)
		if len(f) >= 2 {
			kb, _ := strconv.ParseFloat(f[1], 64)
			m["memory"] = fmt.Sprintf("%.1f GiB", kb/1024/1024)
		}
	}
	m["kernel"] = firstLine("uname", "-sr")
	m["go"] = firstLine("go", "version")
	m["wrk"] = firstLine("wrk", "-v")
	m["mitmproxy"] = firstLine("mitmdump", "--version")
	m["squid"] = firstLine("squid", "-v")
	if v := os.Getenv("PANOPTICON_VERSION"); v != "" {
		m["panopticon"] = v
	}
	if v := os.Getenv("PANOPTICON_BASELINE_VERSION"); v != "" {
		m["baseline"] = v
	}
	return m
}

// ---- go test -bench output ----

var reBench = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+(.*)$`)

func parseGoBench(text string) []goBenchResult {
	var out []goBenchResult
	for _, line := range strings.Split(text, "\n") {
		m := reBench.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		g := goBenchResult{Name: m[1], Metrics: map[string]float64{}}
		f := strings.Fields(m[3])
		for i := 0; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				g.Metrics[f[i+1]] = v
			}
		}
		out = append(out, g)
	}
	return out
}
