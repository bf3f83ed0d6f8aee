package supervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/engine"
)

// Environment variables that make a process a child (see Config.Processes).
const (
	envChild    = "DUCTWORK_CHILD"          // the child's process ID
	envLifeline = "DUCTWORK_CHILD_LIFELINE" // fd of the pipe whose EOF means the parent is gone
	envReport   = "DUCTWORK_CHILD_REPORT"   // fd of the pipe the child reports on
)

// Children configures the child processes of Config.Processes. The zero
// value is valid.
type Children struct {
	// MaxSteps recycles a child after it has executed that many steps: it
	// claims no more, finishes what it holds and is replaced. 0 means
	// never.
	MaxSteps int
	// MaxRSS recycles a child whose resident set size, read from /proc, is
	// above it, in bytes. 0 means never; it needs Linux.
	MaxRSS int64
	// CheckInterval is how often each child's RSS is read. Default 1s.
	CheckInterval time.Duration
	// RestartBackoff is the delay before replacing a child that died on its
	// own (a crash, a kill, an exit from user code). It doubles while
	// children keep dying young, up to MaxRestartBackoff, and starts over
	// once a child lived longer than MaxRestartBackoff. Recycled children
	// are replaced at once. Defaults 100ms and 10s.
	RestartBackoff    time.Duration
	MaxRestartBackoff time.Duration
	// StopTimeout is how long a child asked to stop (recycled, or at
	// shutdown) may take before it is killed with SIGKILL. Default
	// ShutdownGrace + StuckGrace + ReleaseTimeout + 1s, the bound of the
	// child's own shutdown.
	StopTimeout time.Duration
	// Command returns the command that starts a child. Default: this
	// program (os.Executable) with the same arguments, environment, stdout
	// and stderr. The supervisor adds the environment variables and the two
	// pipes a child needs (cmd.ExtraFiles) and its process attributes.
	Command func() (*exec.Cmd, error)
}

func (cc *Children) defaults(c *Config) error {
	if !processesSupported {
		return &ConfigError{Reason: "Processes needs a Unix system"}
	}
	if c.Role == RoleMaintenance {
		return &ConfigError{Reason: "Processes needs a role that executes steps (RoleAll or RoleWorker), not RoleMaintenance"}
	}
	if cc.CheckInterval == 0 {
		cc.CheckInterval = time.Second
	}
	if cc.RestartBackoff == 0 {
		cc.RestartBackoff = 100 * time.Millisecond
	}
	if cc.MaxRestartBackoff == 0 {
		cc.MaxRestartBackoff = 10 * time.Second
	}
	cc.MaxRestartBackoff = max(cc.MaxRestartBackoff, cc.RestartBackoff)
	if cc.StopTimeout == 0 {
		cc.StopTimeout = c.ShutdownGrace + c.StuckGrace + c.ReleaseTimeout + time.Second
	}
	if cc.Command == nil {
		cc.Command = defaultCommand
	}
	return nil
}

// ChildExit describes a child process that ended, for Hooks.OnChildExitFunc.
type ChildExit struct {
	// Slot is the child's index, 0 to Processes-1; ProcessID the ID it
	// registered as, PID its operating-system process ID.
	Slot      int
	ProcessID string
	PID       int
	// Reason says why it ended: "steps" (MaxSteps reached), "rss" (above
	// MaxRSS), "stuck" (a step ignored its timeout; the child stopped
	// claiming and was stopped), "shutdown", or "died" (on its own).
	Reason string
	// Killed: it did not stop within StopTimeout and was killed.
	Killed bool
	// Err is what waiting for it returned (its exit status).
	Err error
}

// Exit reasons of ChildExit.
const (
	exitSteps    = "steps"
	exitRSS      = "rss"
	exitStuck    = "stuck"
	exitShutdown = "shutdown"
	exitDied     = "died"
)

// child is this process's identity when a parent started it.
type child struct {
	id       string
	lifeline *os.File
	report   *os.File
	rmu      sync.Mutex
}

var (
	childOnce sync.Once
	thisChild *child
)

// IsChild reports whether this process is a child worker started by a
// supervisor with Config.Processes. In a child, Supervisor.Run executes
// steps (whatever its Config says about Processes) and returns when the
// parent stops it or goes away. A program can use IsChild to skip what
// only the parent should do (serve HTTP, trigger runs, migrate).
func IsChild() bool { return childInfo() != nil }

func childInfo() *child {
	childOnce.Do(func() {
		id := os.Getenv(envChild)
		if id == "" {
			return
		}
		c := &child{id: id}
		// The pipes are not handed on to processes this child starts.
		if fd, err := strconv.Atoi(os.Getenv(envLifeline)); err == nil {
			c.lifeline = inheritedFile(fd, "ductwork-lifeline")
		}
		if fd, err := strconv.Atoi(os.Getenv(envReport)); err == nil {
			c.report = inheritedFile(fd, "ductwork-report")
		}
		// Processes this child starts are not children of the supervisor.
		for _, k := range []string{envChild, envLifeline, envReport} {
			_ = os.Unsetenv(k)
		}
		thisChild = c
	})
	return thisChild
}

// send reports an event to the parent: one line per event.
func (c *child) send(line string) {
	if c.report == nil {
		return
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	_, _ = c.report.WriteString(line + "\n")
}

// runChild is Run in a child process: it executes steps until the parent
// asks it to stop (SIGTERM, SIGINT), goes away (the lifeline pipe reaches
// EOF, or Pdeathsig on Linux), or a step is abandoned (the parent replaces
// the child: only a new process is rid of the stuck goroutine).
func (s *Supervisor) runChild(ctx context.Context, c *child) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	bound := s.cfg.ShutdownGrace + s.cfg.StuckGrace + s.cfg.ReleaseTimeout + time.Second
	orphaned := make(chan struct{})
	if c.lifeline != nil {
		go func() {
			_, _ = io.Copy(io.Discard, c.lifeline) // returns at EOF: the parent is gone
			close(orphaned)
		}()
	}
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		for {
			select {
			case <-sig:
				cancel()
			case <-orphaned:
				s.logger.Warn("ductwork: the parent process is gone; stopping")
				cancel()
				// Whatever the program does after Run, a child whose parent
				// is gone must not outlive it for long.
				time.AfterFunc(bound, func() { os.Exit(1) })
				orphaned = nil
			case <-stopped:
				return
			}
		}
	}()
	s.onAbandon = func(*backend.Job, error) {
		// Stop claiming at once, so that no more work lands here, and tell
		// the parent, which replaces this process.
		c.send("stuck")
		cancel()
	}
	var executed atomic.Int64
	s.onExecuted = func() {
		c.send("step")
		if n := s.cfg.Children.MaxSteps; n > 0 && executed.Add(1) >= int64(n) {
			cancel() // stop claiming: the parent replaces this process
		}
	}
	return s.run(ctx)
}

// processes runs Config.Processes child processes until ctx is done, then
// stops them.
func (s *Supervisor) processes(ctx context.Context) {
	sp := newSpawner()
	defer sp.close()
	var wg sync.WaitGroup
	for slot := range s.cfg.Processes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.keepChild(ctx, sp, slot)
		}()
	}
	wg.Wait()
}

// keepChild keeps one child process alive in slot until ctx is done.
func (s *Supervisor) keepChild(ctx context.Context, sp *spawner, slot int) {
	cc := s.cfg.Children
	delay := cc.RestartBackoff
	for gen := 0; ctx.Err() == nil; gen++ {
		id := fmt.Sprintf("%s-c%d.%d", s.cfg.ProcessID, slot, gen)
		began := time.Now()
		ex, err := s.runOneChild(ctx, sp, slot, id)
		if err != nil {
			s.logger.Error("ductwork: cannot start a child process", slog.Int("slot", slot), slog.Any("error", err))
		} else {
			if f := s.cfg.Hooks.OnChildExitFunc; f != nil {
				engine.SafeCall(ctx, s.logger, "OnChildExitFunc", func() { f(*ex) })
			}
			if ex.Reason != exitDied {
				delay = cc.RestartBackoff
				continue // recycled (or shutting down): replace at once
			}
		}
		if time.Since(began) > cc.MaxRestartBackoff {
			delay = cc.RestartBackoff
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, cc.MaxRestartBackoff)
	}
}

// runOneChild starts a child process and watches it until it exits.
func (s *Supervisor) runOneChild(ctx context.Context, sp *spawner, slot int, id string) (*ChildExit, error) {
	cc := s.cfg.Children
	cmd, err := cc.Command()
	if err != nil {
		return nil, err
	}
	lifeR, lifeW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	repR, repW, err := os.Pipe()
	if err != nil {
		_ = lifeR.Close()
		_ = lifeW.Close()
		return nil, err
	}
	n := 3 + len(cmd.ExtraFiles)
	cmd.ExtraFiles = append(cmd.ExtraFiles, lifeR, repW)
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	// Later entries win over any inherited ones.
	cmd.Env = append(cmd.Env[:len(cmd.Env):len(cmd.Env)], envChild+"="+id,
		envLifeline+"="+strconv.Itoa(n), envReport+"="+strconv.Itoa(n+1))
	cmd.SysProcAttr = childAttr()
	err = sp.start(cmd)
	// The child holds its own ends now; the parent keeps lifeW open for as
	// long as it lives (the kernel closes it when the parent dies).
	_ = lifeR.Close()
	_ = repW.Close()
	if err != nil {
		_ = lifeW.Close()
		_ = repR.Close()
		return nil, err
	}
	defer func() { _ = lifeW.Close() }()
	pid := cmd.Process.Pid
	log := s.logger.With(slog.Int("slot", slot), slog.String("child", id), slog.Int("pid", pid))
	log.Debug("ductwork: child process started")

	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	events := make(chan string, 16)
	go func() {
		defer close(events)
		defer func() { _ = repR.Close() }()
		sc := bufio.NewScanner(repR)
		for sc.Scan() {
			events <- sc.Text()
		}
	}()
	var check <-chan time.Time
	if cc.MaxRSS > 0 {
		t := time.NewTicker(cc.CheckInterval)
		defer t.Stop()
		check = t.C
	}
	ex := &ChildExit{Slot: slot, ProcessID: id, PID: pid}
	steps := 0
	var stopAt <-chan time.Time
	stop := func(reason string) {
		if ex.Reason != "" {
			return
		}
		ex.Reason = reason
		check = nil
		_ = cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(cc.StopTimeout)
		stopAt = t.C
	}
	handle := func(ev string) {
		switch ev {
		case "step":
			steps++
			if cc.MaxSteps > 0 && steps >= cc.MaxSteps {
				log.Info("ductwork: recycling a child process after its step limit", slog.Int("steps", steps))
				stop(exitSteps)
			}
		case "stuck":
			log.Warn("ductwork: a step of a child process ignored the cancellation of its context; replacing the process")
			stop(exitStuck)
		}
	}
	done := ctx.Done()
	for {
		select {
		case err := <-exited:
			if events != nil {
				for ev := range events { // what it reported before it exited
					handle(ev)
				}
			}
			ex.Err = err
			if ex.Reason == "" {
				ex.Reason = exitDied
			}
			log.Debug("ductwork: child process exited", slog.String("reason", ex.Reason), slog.Any("status", err))
			s.afterChild(ctx, log, ex)
			return ex, nil
		case <-done:
			done = nil
			stop(exitShutdown)
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			handle(ev)
		case <-check:
			rss, err := readRSS(pid)
			if err != nil {
				log.Warn("ductwork: cannot read a child's RSS; MaxRSS is not enforced", slog.Any("error", err))
				check = nil
				continue
			}
			if rss > cc.MaxRSS {
				log.Info("ductwork: recycling a child process above its RSS limit", slog.Int64("rss", rss), slog.Int64("max_rss", cc.MaxRSS))
				stop(exitRSS)
			}
		case <-stopAt:
			log.Warn("ductwork: a child process did not stop in time; killing it", slog.Duration("stop_timeout", cc.StopTimeout))
			ex.Killed = true
			_ = cmd.Process.Kill()
			stopAt = nil
		}
	}
}

// afterChild recovers what an ended child still held. A child that stopped
// gracefully deregistered itself; one that died (or was killed) left its
// claims running: they are released as crash re-runs at once (no retry
// spent, the crash counted), rather than when the reaper would find the
// child's heartbeat stale, and its process row is removed.
func (s *Supervisor) afterChild(ctx context.Context, log *slog.Logger, ex *ChildExit) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ReleaseTimeout)
	defer cancel()
	res, err := s.b.Heartbeat(cctx, &backend.HeartbeatParams{ProcessID: ex.ProcessID, Owned: true})
	if errors.Is(err, backend.ErrProcessNotFound) {
		if ex.Reason == exitDied {
			log.Warn("ductwork: a child process died; replacing it", slog.Any("error", ex.Err))
		}
		return // deregistered (or never registered): it holds nothing
	}
	if err != nil {
		log.Warn("ductwork: cannot recover a dead child's claims; the reaper will", slog.Any("error", err))
		return
	}
	log.Warn("ductwork: a child process died holding claims; releasing them as crash re-runs and replacing it",
		slog.Any("error", ex.Err), slog.Int("steps", len(res.Owned)))
	for _, o := range res.Owned {
		s.eng.ReleaseLost(cctx, ex.ProcessID, &backend.Job{ID: o.JobID, Fence: o.Fence})
	}
	if err := s.b.DeregisterProcess(cctx, &backend.DeregisterProcessParams{ProcessID: ex.ProcessID}); err != nil {
		log.Warn("ductwork: cannot remove a dead child's process row; the reaper will", slog.Any("error", err))
	}
}

// defaultCommand re-executes this program.
func defaultCommand() (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("supervisor: cannot find this program to start child processes: %w", err)
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd, nil
}

// readRSSFile parses VmRSS from a /proc/<pid>/status file.
func readRSSFile(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				break
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in %s", path)
}

// spawner starts every child from one goroutine locked to its OS thread.
// On Linux a child's Pdeathsig fires when the thread that started it exits,
// not the process, and the Go runtime may end idle threads: this thread
// lives until every child has been stopped.
type spawner struct{ reqs chan spawnReq }

type spawnReq struct {
	cmd *exec.Cmd
	err chan error
}

func newSpawner() *spawner {
	sp := &spawner{reqs: make(chan spawnReq)}
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		for r := range sp.reqs {
			r.err <- r.cmd.Start()
		}
	}()
	return sp
}

func (sp *spawner) start(cmd *exec.Cmd) error {
	ch := make(chan error, 1)
	sp.reqs <- spawnReq{cmd, ch}
	return <-ch
}

// close ends the spawner; its children must have exited.
func (sp *spawner) close() { close(sp.reqs) }
