package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// restartSupported reports why the database server of kind cannot be
// restarted from here (nil when it can): it takes root and the server's
// control commands.
func restartSupported(kind string) error {
	if os.Geteuid() != 0 {
		return errors.New("not running as root")
	}
	var cmds []string
	switch kind {
	case "postgres":
		cmds = []string{"pg_ctlcluster"}
		if v, err := pgVersion(); err != nil || v == "" {
			return fmt.Errorf("no cluster under /etc/postgresql: %w", err)
		}
	case "mysql":
		cmds = []string{"mariadb-admin", "start-stop-daemon", "/usr/sbin/mariadbd"}
	default:
		return fmt.Errorf("-restart-db needs postgres or mysql, not %s", kind)
	}
	for _, c := range cmds {
		if _, err := exec.LookPath(c); err != nil {
			return err
		}
	}
	return nil
}

func pgVersion() (string, error) {
	entries, err := os.ReadDir("/etc/postgresql")
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		if e.IsDir() {
			if _, err := os.Stat(filepath.Join("/etc/postgresql", e.Name(), "main")); err == nil {
				return e.Name(), nil
			}
		}
	}
	return "", errors.New("no main cluster")
}

// restartServer restarts the database server and waits until it answers on
// dsn again. Whatever happens, it tries to leave the server running.
func restartServer(kind, dsn string) (down time.Duration, err error) {
	start := time.Now()
	switch kind {
	case "postgres":
		v, verr := pgVersion()
		if verr != nil {
			return 0, verr
		}
		if out, rerr := exec.Command("pg_ctlcluster", "--skip-systemctl-redirect", v, "main", "restart").CombinedOutput(); rerr != nil {
			err = fmt.Errorf("pg_ctlcluster restart: %w: %s", rerr, strings.TrimSpace(string(out)))
			// Make sure it runs (start is a no-op error when it already does).
			_ = exec.Command("pg_ctlcluster", "--skip-systemctl-redirect", v, "main", "start").Run()
		}
		werr := waitAnswers(kind, dsn, 90*time.Second, nil)
		return time.Since(start), errors.Join(err, werr)
	case "mysql":
		if out, serr := exec.Command("mariadb-admin", "-uroot", "shutdown").CombinedOutput(); serr != nil {
			err = fmt.Errorf("mariadb-admin shutdown: %w: %s", serr, strings.TrimSpace(string(out)))
		}
		startMariaDB := func() error {
			// --pidfile: only the main server counts as running; another
			// mariadbd (a Galera node of scripts/galera.sh) must not make
			// --oknodo skip the start.
			out, err := exec.Command("start-stop-daemon", "--start", "--oknodo", "--background",
				"--pidfile", mariadbPidfile, "--exec", "/usr/sbin/mariadbd").CombinedOutput()
			if err != nil {
				return fmt.Errorf("start-stop-daemon: %w: %s", err, strings.TrimSpace(string(out)))
			}
			return nil
		}
		// The shutdown returns when the server stopped; start it again at
		// once, and once more if it does not answer after a while.
		err = errors.Join(err, startMariaDB())
		werr := waitAnswers(kind, dsn, 90*time.Second, startMariaDB)
		return time.Since(start), errors.Join(err, werr)
	}
	return 0, fmt.Errorf("cannot restart %s", kind)
}

// mariadbPidfile is where Debian's main MariaDB server writes its pid.
const mariadbPidfile = "/run/mysqld/mysqld.pid"

// waitAnswers polls the server until a query succeeds. kick, when set, is
// called once every 20s without an answer.
func waitAnswers(kind, dsn string, limit time.Duration, kick func() error) error {
	deadline := time.Now().Add(limit)
	lastKick := time.Now()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := ping(ctx, kind, dsn)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not answer after the restart: %w", kind, err)
		}
		if kick != nil && time.Since(lastKick) > 20*time.Second {
			_ = kick()
			lastKick = time.Now()
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func ping(ctx context.Context, kind, dsn string) error {
	switch kind {
	case "postgres":
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		_, err = conn.Exec(ctx, "SELECT 1")
		return err
	case "mysql":
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			return err
		}
		defer db.Close()
		_, err = db.ExecContext(ctx, "SELECT 1")
		return err
	}
	return nil
}

// nodeFault runs the -node-fault command, waits for hold (longer than the
// reap threshold: the claims of the workers on that node must be reaped by
// the others), then runs -node-heal, which returns once the node serves
// again. It returns how long the node was out.
func nodeFault(ctx context.Context, fault, heal string, hold time.Duration) (time.Duration, error) {
	start := time.Now()
	if out, err := exec.CommandContext(ctx, "sh", "-c", fault).CombinedOutput(); err != nil {
		return time.Since(start), fmt.Errorf("-node-fault %q: %w: %s", fault, err, strings.TrimSpace(string(out)))
	}
	select {
	case <-ctx.Done():
	case <-time.After(hold):
	}
	// The heal runs even when the run is being cancelled: leave the cluster whole.
	if out, err := exec.Command("sh", "-c", heal).CombinedOutput(); err != nil {
		return time.Since(start), fmt.Errorf("-node-heal %q: %w: %s", heal, err, strings.TrimSpace(string(out)))
	}
	return time.Since(start), nil
}
