package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/<pid>/stat (100
// on every Linux architecture Go supports).
const clockTicks = 100

// procTree returns pid and all its descendants.
func procTree(pid int) []int {
	if pid <= 0 {
		return nil
	}
	parent := map[int]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(p); err == nil {
			parent[p] = st.ppid
		}
	}
	tree := []int{pid}
	for changed := true; changed; {
		changed = false
		for p, pp := range parent {
			if containsInt(tree, pp) && !containsInt(tree, p) {
				tree = append(tree, p)
				changed = true
			}
		}
	}
	return tree
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

type procStat struct {
	ppid  int
	ticks int64 // utime + stime
}

func readStat(pid int) (procStat, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')') // comm may hold spaces
	if i < 0 {
		return procStat{}, fmt.Errorf("odd stat for %d", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("short stat for %d", pid)
	}
	ppid, _ := strconv.Atoi(f[1])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return procStat{ppid: ppid, ticks: ut + st}, nil
}

// statusKB reads a "Vm…:  N kB" line of /proc/<pid>/status.
func statusKB(pid int, field string) int64 {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// treeRSS is the summed VmRSS (KiB) of pids.
func treeRSS(pids []int) int64 {
	var sum int64
	for _, p := range pids {
		sum += statusKB(p, "VmRSS")
	}
	return sum
}

func treeTicks(pids []int) int64 {
	var sum int64
	for _, p := range pids {
		if st, err := readStat(p); err == nil {
			sum += st.ticks
		}
	}
	return sum
}

// procUsage is a subject's resource use during one measurement.
type procUsage struct {
	RSSStartMiB float64 `json:"rss_start_mib"`
	PeakRSSMiB  float64 `json:"peak_rss_mib"`  // highest sampled VmRSS of the process tree
	HWMMiB      float64 `json:"vm_hwm_mib"`    // VmHWM of the main process (since its start)
	CPUSeconds  float64 `json:"cpu_seconds"`   // utime+stime of the tree during the load
	CPUCores    float64 `json:"cpu_cores"`     // CPUSeconds / wall seconds
	WallSeconds float64 `json:"wall_seconds"`  //
	Samples     int     `json:"samples"`       //
	Processes   int     `json:"processes"`     // size of the process tree
	Pid         int     `json:"pid,omitempty"` //
}

// sampler watches a process tree every 100 ms until stopped.
type sampler struct {
	pid   int
	pids  []int
	start time.Time
	t0    int64
	u     procUsage
	stop  chan struct{}
	done  sync.WaitGroup
}

func startSampler(pid int) *sampler {
	s := &sampler{pid: pid, stop: make(chan struct{})}
	if pid <= 0 {
		return s
	}
	s.pids = procTree(pid)
	s.start = time.Now()
	s.t0 = treeTicks(s.pids)
	s.u.RSSStartMiB = float64(treeRSS(s.pids)) / 1024
	s.u.PeakRSSMiB = s.u.RSSStartMiB
	s.u.Pid = pid
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		n := 0
		for {
			select {
			case <-s.stop:
				return
			case <-tick.C:
				n++
				if n%10 == 0 { // helpers come and go (squid's certificate generator)
					s.pids = procTree(pid)
				}
				s.u.PeakRSSMiB = max(s.u.PeakRSSMiB, float64(treeRSS(s.pids))/1024)
				s.u.Samples++
			}
		}
	}()
	return s
}

func (s *sampler) finish() *procUsage {
	if s.pid <= 0 {
		return nil
	}
	close(s.stop)
	s.done.Wait()
	wall := time.Since(s.start).Seconds()
	s.u.PeakRSSMiB = max(s.u.PeakRSSMiB, float64(treeRSS(s.pids))/1024)
	s.u.CPUSeconds = float64(treeTicks(s.pids)-s.t0) / clockTicks
	s.u.WallSeconds = wall
	s.u.CPUCores = s.u.CPUSeconds / wall
	s.u.HWMMiB = float64(statusKB(s.pid, "VmHWM")) / 1024
	s.u.Processes = len(s.pids)
	return &s.u
}

// ---- wrk ----

type wrkResult struct {
	PerSec   float64 `json:"per_sec"`
	Ops      int64   `json:"ops"`
	P50MS    float64 `json:"p50_ms"`
	P99MS    float64 `json:"p99_ms"`
	Errors   int64   `json:"errors"`
	Non2xx   int64   `json:"non_2xx"`
	FirstErr string  `json:"first_error,omitempty"`
}

var (
	reRPS     = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	reReqs    = regexp.MustCompile(`(\d+) requests in`)
	rePct     = regexp.MustCompile(`(?m)^\s+(50|99)(?:\.000)?%\s+([0-9.]+)(us|ms|s)\s*$`)
	reSockErr = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	reNon2xx  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

// runWrk runs wrk in pod against url and parses its report.
func runWrk(ctx context.Context, pod, url string, threads, conns int, dur time.Duration) (wrkResult, string, error) {
	secs := max(1, int(dur.Round(time.Second)/time.Second))
	args := []string{"netns", "exec", pod, "wrk", "-t" + strconv.Itoa(threads), "-c" + strconv.Itoa(conns),
		"-d" + strconv.Itoa(secs) + "s", "--timeout", "5s", "--latency", url}
	cctx, cancel := context.WithTimeout(ctx, dur+30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, "ip", args...).CombinedOutput()
	text := string(out)
	if err != nil {
		return wrkResult{}, text, fmt.Errorf("wrk: %v: %s", err, text)
	}
	var r wrkResult
	if m := reRPS.FindStringSubmatch(text); m != nil {
		r.PerSec, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := reReqs.FindStringSubmatch(text); m != nil {
		r.Ops, _ = strconv.ParseInt(m[1], 10, 64)
	}
	for _, m := range rePct.FindAllStringSubmatch(text, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		switch m[3] {
		case "us":
			v /= 1000
		case "s":
			v *= 1000
		}
		if m[1] == "50" {
			r.P50MS = v
		} else {
			r.P99MS = v
		}
	}
	if m := reSockErr.FindStringSubmatch(text); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.Errors += n
		}
		r.FirstErr = m[0]
	}
	if m := reNon2xx.FindStringSubmatch(text); m != nil {
		r.Non2xx, _ = strconv.ParseInt(m[1], 10, 64)
		r.Errors += r.Non2xx
		if r.FirstErr == "" {
			r.FirstErr = m[0]
		}
	}
	if r.PerSec == 0 {
		return r, text, fmt.Errorf("wrk reported no throughput: %s", text)
	}
	return r, text, nil
}
