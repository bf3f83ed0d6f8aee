package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

// TestRunSQLite runs every workload at a small size on SQLite and checks the
// JSON and benchmark-format output.
func TestRunSQLite(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every workload")
	}
	var out bytes.Buffer
	if err := run([]string{"-backend", "sqlite", "-n", "40", "-workers", "4", "-json", "-benchfmt", "-dsn", t.TempDir()}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"jobs": true, "chain": true, "fanout": true, "latency": true, "latency-handoff": true}
	benchLines := 0
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "{"):
			var r result
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			if !want[r.Workload] || r.Backend != "sqlite" || r.Sync != "normal" || r.N != 40 || r.Workers != 4 || r.Seconds <= 0 || r.StepsPerSec <= 0 || r.CPUSeconds <= 0 {
				t.Errorf("unexpected result %+v", r)
			}
			if (r.Workload == "chain" || strings.HasPrefix(r.Workload, "latency")) && (r.P50Ms <= 0 || r.P99Ms < r.P50Ms) {
				t.Errorf("%s: p50 %v p99 %v", r.Workload, r.P50Ms, r.P99Ms)
			}
			delete(want, r.Workload)
		case strings.HasPrefix(line, "Benchmark"):
			benchLines++
			if f := strings.Fields(line); len(f) < 4 || f[3] != "ns/op" || !strings.HasSuffix(f[0], "/sqlite") {
				t.Errorf("not in the benchmark format: %q", line)
			}
		}
	}
	if len(want) > 0 {
		t.Errorf("missing results: %v", want)
	}
	if benchLines != 5 {
		t.Errorf("%d benchmark lines, want 5", benchLines)
	}
}

// TestSyncFull runs W1 with -sync full and checks that the setting is in the
// JSON, the table and the benchmark names.
func TestSyncFull(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"-backend", "sqlite", "-sync", "full", "-workload", "jobs", "-n", "20", "-workers", "4", "-json", "-benchfmt",
		"-dsn", t.TempDir()}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var r result
	first, rest, _ := strings.Cut(out.String(), "\n")
	if err := json.Unmarshal([]byte(first), &r); err != nil {
		t.Fatalf("%q: %v", first, err)
	}
	if r.Sync != "full" || r.Backend != "sqlite" || r.StepsPerSec <= 0 {
		t.Errorf("unexpected result %+v", r)
	}
	if !strings.Contains(rest, "\nBenchmarkW1Jobs/sqlite-full\t1\t") {
		t.Errorf("no BenchmarkW1Jobs/sqlite-full line in\n%s", rest)
	}
	var table bytes.Buffer
	printTable(&table, []result{r, {Workload: "jobs", Backend: "postgres"}})
	lines := strings.Split(strings.TrimSpace(table.String()), "\n")
	if len(lines) != 3 || strings.Fields(lines[0])[2] != "sync" || strings.Fields(lines[1])[2] != "full" || strings.Fields(lines[2])[2] != "-" {
		t.Errorf("table without the sync column:\n%s", table.String())
	}
}

// TestMain lets the test binary stand in for the command when a -procs run
// starts its worker processes (os.Executable is the test binary).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "-serve-worker" {
		if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "ductwork-bench:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestProcsSQLite drains W1 and W2 with two supervisor processes on one
// SQLite file (with -sync full, which the processes receive too) and checks
// that every run completed and the figures are set.
func TestProcsSQLite(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"-backend", "sqlite", "-sync", "full", "-workload", "jobs,chain", "-n", "30", "-workers", "4", "-procs", "2",
		"-json", "-dsn", t.TempDir()}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var got []result
	for line := range strings.SplitSeq(strings.TrimSpace(out.String()), "\n") {
		var r result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		got = append(got, r)
	}
	if len(got) != 2 {
		t.Fatalf("%d results, want 2: %s", len(got), out.String())
	}
	for _, r := range got {
		if r.Procs != 2 || r.Sync != "full" || r.Workers != 4 || r.N != 30 || r.StepsPerSec <= 0 || r.CPUSeconds <= 0 || r.MachineCPU <= 0 {
			t.Errorf("unexpected result %+v", r)
		}
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-workload", "chain,latency", "-json"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.backend != "sqlite" || o.sync != "normal" || o.workers != 16 || o.count != 1 || o.benchfmt || len(o.workloads) != 2 {
		t.Errorf("unexpected options %+v", o)
	}
	if o, err := parseFlags([]string{"-sync", "FULL"}, io.Discard); err != nil || o.sync != "full" {
		t.Errorf("-sync FULL: %+v, %v", o, err)
	}
	if o, err := parseFlags([]string{"-backend", "postgres"}, io.Discard); err != nil || o.sync != "" {
		t.Errorf("postgres: sync %q, %v; want none", o.sync, err)
	}
	for _, args := range [][]string{{"-backend", "oracle"}, {"-workload", "nope"}, {"-workers", "0"}, {"extra"},
		{"-netns"}, {"-procs", "-1"}, {"-procs", "2", "-workload", "fanout"}, {"-procs", "2", "-cpuprofile", "x"},
		{"-sync", "off"}, {"-sync", ""}, {"-backend", "postgres", "-sync", "full"}, {"-backend", "mysql", "-sync", "normal"}} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	if p := percentile(d, 0.5); p != 50 {
		t.Errorf("p50 = %d", p)
	}
	if p := percentile(d, 0.99); p != 99 {
		t.Errorf("p99 = %d", p)
	}
	if p := percentile(d[:1], 0.99); p != 1 {
		t.Errorf("p99 of one = %d", p)
	}
}
