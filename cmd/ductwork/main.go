// Command ductwork looks at and operates the runs in a Ductwork database:
// migrate the schema, list and inspect runs, revive and cancel them, list
// processes and definitions, probe health, and serve the dashboard.
//
//	ductwork [--database-url URL] COMMAND [flags] [args]
//
// The database comes from --database-url or DUCTWORK_DATABASE_URL; its scheme
// picks the backend: postgres://user@host/db?schema=NAME, mysql://user:pw@host:3306/db,
// sqlite:path/to/file.db. Errors print one line on stderr and exit non-zero.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// exitError carries an exit status other than 1.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

const usage = `usage: ductwork [--database-url URL] COMMAND [flags] [args]

commands:
  migrate                    bring the schema to the newest version
  runs                       list runs (--pipeline, --status, --key, --since, --until, --error, --limit, --before, -json)
  run ID                     a run and its step tree (--watch, -json)
  executions ID              a run's execution history (--step, --job, --stack, --limit, --after, -json)
  revive ID                  resume a halted run
  cancel ID --reason TEXT    cancel a run
  send ID SIGNAL [PAYLOAD]   send a signal with a JSON payload (--scope, --key, --all, -json)
  processes                  list supervisor processes (-json)
  definitions                list stored definitions and stranded versions (-json)
  schedules                  list schedules: spec, time zone, next and last tick, last run (-json)
  health                     exit 0 when healthy (--max-wait; exit 2 not migrated, 3 no live process, 4 steps waiting too long)
  serve                      serve the dashboard (--addr 127.0.0.1:8080, --token, --read-only, --prefix)

The database URL comes from --database-url or DUCTWORK_DATABASE_URL:
  postgres://user@host:5432/db?schema=NAME   mysql://user:password@host:3306/db   sqlite:path/to/file.db
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := dispatch(ctx, args, stdout, stderr)
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	fmt.Fprintln(stderr, "ductwork: "+msg)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// globals are the flags every command takes.
type globals struct {
	databaseURL string
	stdout      io.Writer
	stderr      io.Writer
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	g := &globals{stdout: stdout, stderr: stderr, databaseURL: os.Getenv("DUCTWORK_DATABASE_URL")}
	top := flag.NewFlagSet("ductwork", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	top.StringVar(&g.databaseURL, "database-url", g.databaseURL, "database URL")
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
		}
		return err
	}
	rest := top.Args()
	if len(rest) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	cmds := map[string]func(context.Context, *globals, []string) error{
		"migrate": cmdMigrate, "runs": cmdRuns, "run": cmdRun, "executions": cmdExecutions, "revive": cmdRevive, "cancel": cmdCancel, "send": cmdSend,
		"processes": cmdProcesses, "definitions": cmdDefinitions, "schedules": cmdSchedules, "health": cmdHealth, "serve": cmdServe,
	}
	cmd, ok := cmds[rest[0]]
	if !ok {
		if rest[0] == "help" {
			fmt.Fprint(stdout, usage)
			return nil
		}
		return fmt.Errorf("unknown command %q (run ductwork help)", rest[0])
	}
	return cmd(ctx, g, rest[1:])
}

// flags returns a flag set for a command that also takes --database-url.
func (g *globals) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&g.databaseURL, "database-url", g.databaseURL, "database URL (default $DUCTWORK_DATABASE_URL)")
	return fs
}

// parse parses a command's flags, which may come before or after its
// positional arguments, and returns the positional ones.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(os.Stdout)
				fs.PrintDefaults()
			}
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
