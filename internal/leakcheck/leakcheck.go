// Package leakcheck fails a test binary that leaves goroutines behind.
//
// A test package calls it from TestMain:
//
//	func TestMain(m *testing.M) { leakcheck.Main(m) }
//
// After the tests pass, Main reads the stacks of every goroutine
// (runtime.Stack) and polls until only expected ones remain or a deadline
// passes; then it prints the unexpected goroutines and exits with status 1.
// Expected are the goroutine running the check, the testing package's own
// goroutines parked between tests, the signal handling goroutines of
// os/signal, goroutines parked in a system call by cgo, and those whose top
// function the caller names with IgnoreTopFunction: the rules of
// go.uber.org/goleak, which it replaces, so that the library's module does
// not require a test dependency.
//
// The package is imported only by tests.
package leakcheck

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// DefaultWait is how long Main and Find wait for goroutines that are still
// ending before they call them leaked.
const DefaultWait = 5 * time.Second

// Option adjusts a check.
type Option func(*config)

type config struct {
	ignoreTop map[string]bool
	wait      time.Duration
}

// IgnoreTopFunction ignores goroutines whose stack has fn on top, named as
// a stack trace names it, for example
// "github.com/Shopify/toxiproxy/v2/toxics.(*NoopToxic).Pipe".
func IgnoreTopFunction(fn string) Option {
	return func(c *config) { c.ignoreTop[fn] = true }
}

// Wait sets how long a check polls for goroutines to end (DefaultWait
// unless set). A non-positive d checks once.
func Wait(d time.Duration) Option {
	return func(c *config) { c.wait = d }
}

// Main runs the tests and, when they passed, the check; it exits the
// process with the tests' status, or 1 when goroutines were left behind.
func Main(m *testing.M, opts ...Option) {
	code := m.Run()
	if code == 0 {
		if err := Find(opts...); err != nil {
			fmt.Fprintf(os.Stderr, "leakcheck: the tests passed, but %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// Find polls the goroutines of the process until none is unexpected, and
// returns an error listing the unexpected ones still there when the wait
// ends. The goroutine calling Find is not counted.
func Find(opts ...Option) error {
	c := &config{ignoreTop: map[string]bool{}, wait: DefaultWait}
	for _, o := range opts {
		o(c)
	}
	self, err := currentID()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(c.wait)
	pause := time.Millisecond
	for {
		all, err := goroutines()
		if err != nil {
			return err
		}
		var left []goroutine
		for _, g := range all {
			if g.id != self && !c.expected(g) {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return nil
		}
		if !time.Now().Before(deadline) {
			var b strings.Builder
			fmt.Fprintf(&b, "%d unexpected goroutine(s) remain after %s:\n", len(left), c.wait)
			for _, g := range left {
				fmt.Fprintf(&b, "\ngoroutine %d [%s], %s on top:\n%s", g.id, g.state, g.top, g.stack)
			}
			return errors.New(b.String())
		}
		time.Sleep(min(pause, time.Until(deadline)))
		pause = min(2*pause, 100*time.Millisecond)
	}
}

// expected reports whether g belongs to the test harness or the runtime,
// or was ignored by name.
func (c *config) expected(g goroutine) bool {
	if c.ignoreTop[g.top] {
		return true
	}
	switch g.top {
	case "testing.RunTests", "testing.(*T).Run", "testing.(*T).Parallel", "testing.runFuzzing", "testing.runFuzzTests":
		// The testing package's goroutines, parked between tests.
		if strings.HasPrefix(g.state, "chan receive") {
			return true
		}
	case "os/signal.signal_recv", "os/signal.loop":
		return true // started by importing os/signal
	}
	if g.funcs["runtime.ensureSigM"] {
		return true // started by signal.Notify
	}
	if g.funcs["runtime.goexit"] && strings.HasPrefix(g.state, "syscall") {
		return true // cgo's background goroutines (golang.org/issue/16714)
	}
	return g.funcs["runtime.ReadTrace"] // the execution tracer's reader
}

// goroutine is one goroutine of a stack dump.
type goroutine struct {
	id    int
	state string          // "running", "chan receive", "select, 2 minutes", ...
	top   string          // the function on top of the stack
	funcs map[string]bool // every function on the stack (not its creator)
	stack string          // the stack as printed
}

// goroutines returns every goroutine of the process.
func goroutines() ([]goroutine, error) { return parse(dump(true)) }

// currentID returns the ID of the calling goroutine.
func currentID() (int, error) {
	gs, err := parse(dump(false))
	if err != nil {
		return 0, err
	}
	if len(gs) != 1 {
		return 0, fmt.Errorf("leakcheck: %d goroutines in the current stack", len(gs))
	}
	return gs[0].id, nil
}

func dump(all bool) []byte {
	for size := 64 << 10; ; size *= 2 {
		buf := make([]byte, size)
		if n := runtime.Stack(buf, all); n < size {
			return buf[:n]
		}
	}
}

// parse reads a dump of runtime.Stack: goroutines separated by blank lines,
// each a header "goroutine 7 [chan receive]:" then, for each frame, a
// function line "pkg.fn(args)" and an indented position line, and last
// "created by pkg.fn in goroutine 1" with its position.
func parse(dump []byte) ([]goroutine, error) {
	var out []goroutine
	for _, block := range bytes.Split(bytes.TrimSpace(dump), []byte("\n\n")) {
		lines := strings.Split(string(block), "\n")
		header, ok := strings.CutPrefix(lines[0], "goroutine ")
		if !ok {
			return nil, fmt.Errorf("leakcheck: unexpected stack header %q", lines[0])
		}
		// "7 [chan receive]:", or with GOTRACEBACK=system
		// "7 gp=0xc000007340 m=nil [chan receive]:".
		idText, _, _ := strings.Cut(header, " ")
		id, err := strconv.Atoi(idText)
		open, end := strings.IndexByte(header, '['), strings.LastIndexByte(header, ']')
		if err != nil || open < 0 || end < open {
			return nil, fmt.Errorf("leakcheck: unexpected stack header %q", lines[0])
		}
		g := goroutine{id: id, state: header[open+1 : end], funcs: map[string]bool{}, stack: strings.Join(lines[1:], "\n") + "\n"}
		for _, line := range lines[1:] {
			if line == "" || line[0] == '\t' {
				continue // a position
			}
			if strings.HasPrefix(line, "created by ") || strings.HasPrefix(line, "[originating from") {
				break // the creator is part of another stack
			}
			i := strings.LastIndexByte(line, '(')
			if i <= 0 {
				continue // "...additional frames elided..."
			}
			fn := line[:i]
			g.funcs[fn] = true
			if g.top == "" {
				g.top = fn
			}
		}
		out = append(out, g)
	}
	return out, nil
}
