package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// result is one line of output. In JSON, fields that do not apply to the
// workload are 0; triggers_per_sec is only set for workloads that trigger in
// bulk.
type result struct {
	Workload string `json:"workload"`
	Backend  string `json:"backend"`
	// Sync is SQLite's synchronous setting, "normal" or "full" (-sync);
	// empty for the server backends.
	Sync           string  `json:"sync,omitempty"`
	Workers        int     `json:"workers"`
	N              int     `json:"n"`
	StepsPerSec    float64 `json:"steps_per_sec"`
	Seconds        float64 `json:"seconds"`
	P50Ms          float64 `json:"p50_ms"`
	P99Ms          float64 `json:"p99_ms"`
	CPUSeconds     float64 `json:"cpu_seconds"`
	PeakRSSMB      float64 `json:"peak_rss_mb"`
	TriggersPerSec float64 `json:"triggers_per_sec,omitempty"`
	// Procs is the number of supervisor processes of a -procs run (0: the
	// bench process's own supervisor); NetNS says each had a host of its own.
	Procs int  `json:"procs,omitempty"`
	NetNS bool `json:"netns,omitempty"`
	// MachineCPU is the busy share of the machine's CPU (all cores, the
	// database server included) during a -procs run.
	MachineCPU float64 `json:"machine_cpu,omitempty"`

	meanLat time.Duration
}

func newResult(m measured, o *options, workers int, cpu time.Duration, peakBytes int64) result {
	r := result{
		Workload: m.workload, Backend: o.backend, Sync: o.sync, Workers: workers, N: m.n,
		Seconds:    m.elapsed.Seconds(),
		CPUSeconds: cpu.Seconds(),
		PeakRSSMB:  float64(peakBytes) / (1 << 20),
	}
	if m.elapsed > 0 {
		r.StepsPerSec = float64(m.steps) / m.elapsed.Seconds()
	}
	if m.triggerDur > 0 {
		r.TriggersPerSec = float64(m.n) / m.triggerDur.Seconds()
	}
	if len(m.lat) > 0 {
		lat := slices.Clone(m.lat)
		slices.Sort(lat)
		r.P50Ms = ms(percentile(lat, 0.50))
		r.P99Ms = ms(percentile(lat, 0.99))
		var sum time.Duration
		for _, d := range lat {
			sum += d
		}
		r.meanLat = sum / time.Duration(len(lat))
	}
	return r
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// percentile returns the nearest-rank percentile p (0 < p ≤ 1) of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func (r result) summary() string {
	s := fmt.Sprintf("%s: %.3fs, %.0f steps/s", r.Workload, r.Seconds, r.StepsPerSec)
	if r.TriggersPerSec > 0 {
		s += fmt.Sprintf(", %.0f triggers/s", r.TriggersPerSec)
	}
	if r.P50Ms > 0 || r.P99Ms > 0 {
		s += fmt.Sprintf(", p50 %.2fms p99 %.2fms", r.P50Ms, r.P99Ms)
	}
	if r.Procs > 0 {
		return s + fmt.Sprintf(", %d processes%s, their cpu %.2fs, machine busy %.0f%%", r.Procs, map[bool]string{true: " on hosts of their own"}[r.NetNS], r.CPUSeconds, 100*r.MachineCPU)
	}
	return s + fmt.Sprintf(", cpu %.2fs, peak RSS %.0f MB", r.CPUSeconds, r.PeakRSSMB)
}

func printTable(w io.Writer, rs []result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\tbackend\tsync\tworkers\tprocs\tn\tseconds\tsteps/s\ttriggers/s\tp50 ms\tp99 ms\tcpu s\tpeak RSS MB\t")
	opt := func(v float64, format string) string {
		if v == 0 {
			return "-"
		}
		return fmt.Sprintf(format, v)
	}
	for _, r := range rs {
		procs := "-"
		if r.Procs > 0 {
			procs = strconv.Itoa(r.Procs)
			if r.NetNS {
				procs += " hosts"
			}
		}
		sync := r.Sync
		if sync == "" {
			sync = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%.3f\t%.0f\t%s\t%s\t%s\t%.2f\t%.0f\t\n",
			r.Workload, r.Backend, sync, r.Workers, procs, r.N, r.Seconds, r.StepsPerSec,
			opt(r.TriggersPerSec, "%.0f"), opt(r.P50Ms, "%.2f"), opt(r.P99Ms, "%.2f"), r.CPUSeconds, r.PeakRSSMB)
	}
	_ = tw.Flush()
}

// benchName is the benchmark name of each workload in the benchstat lines.
var benchName = map[string]string{
	"jobs":            "BenchmarkW1Jobs",
	"chain":           "BenchmarkW2Chain",
	"chain-limited":   "BenchmarkW2ChainLimited16",
	"fanout":          "BenchmarkW3Fanout",
	"latency":         "BenchmarkW4TriggerToStart",
	"latency-handoff": "BenchmarkW4Handoff",
}

// printBenchfmt writes the results in the Go benchmark format. The
// throughput workloads are one iteration each (ns/op is the whole workload);
// the latency workloads are n iterations of one sample (ns/op is the mean).
// The header lines are benchstat's configuration keys.
func printBenchfmt(w io.Writer, rs []result) {
	fmt.Fprintf(w, "goos: %s\ngoarch: %s\npkg: github.com/ductwork-go/ductwork/cmd/ductwork-bench\n", runtime.GOOS, runtime.GOARCH)
	if m := cpuModel(); m != "" {
		fmt.Fprintf(w, "cpu: %s\n", m)
	}
	for _, r := range rs {
		// The default setting keeps the plain backend name, so results
		// compare with those of builds before -sync existed.
		name := benchName[r.Workload] + "/" + r.Backend
		if r.Sync == "full" {
			name += "-full"
		}
		if r.Procs > 0 {
			name += fmt.Sprintf("/procs=%d", r.Procs)
			if r.NetNS {
				name += "/netns"
			}
		}
		cpu := fmt.Sprintf("%.4g cpu-sec", r.CPUSeconds)
		switch r.Workload {
		case "latency", "latency-handoff":
			fmt.Fprintf(w, "%s\t%d\t%d ns/op\t%.4g p50-ms\t%.4g p99-ms\n", name, r.N, r.meanLat.Nanoseconds(), r.P50Ms, r.P99Ms)
		case "chain", "chain-limited":
			fmt.Fprintf(w, "%s\t1\t%d ns/op\t%.1f steps/s\t%.4g p50-ms\t%.4g p99-ms\t%s\n", name, secNs(r.Seconds), r.StepsPerSec, r.P50Ms, r.P99Ms, cpu)
		case "fanout":
			fmt.Fprintf(w, "%s\t1\t%d ns/op\t%.1f steps/s\t%.1f peak-RSS-MB\t%s\n", name, secNs(r.Seconds), r.StepsPerSec, r.PeakRSSMB, cpu)
		default:
			fmt.Fprintf(w, "%s\t1\t%d ns/op\t%.1f steps/s\t%.1f triggers/s\t%s\n", name, secNs(r.Seconds), r.StepsPerSec, r.TriggersPerSec, cpu)
		}
	}
}

func secNs(s float64) int64 { return int64(s * 1e9) }

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// resetPeakRSS resets the kernel's peak resident set size (VmHWM) to the
// current RSS, so each workload reports its own peak (Linux 4.0+; elsewhere a
// no-op and the peak is the process's).
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSS returns VmHWM from /proc/self/status in bytes, or 0.
func peakRSS() int64 {
	v, _ := procField("/proc/self/status", "VmHWM:")
	f := strings.Fields(v)
	if len(f) == 0 {
		return 0
	}
	kb, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return 0
	}
	return kb << 10
}

func cpuModel() string {
	v, _ := procField("/proc/cpuinfo", "model name")
	return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
}

// procField returns the rest of the first line of path that starts with prefix.
func procField(path, prefix string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			return rest, true
		}
	}
	return "", false
}
