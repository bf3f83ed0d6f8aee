package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// inTxCheck, for the transactional variant on a server backend, reports
// whether a (stopped) worker has a transaction open on the database server:
// a worker frozen inside a transactional step holds its job's row lock, so
// the reaper waits for it and its commit, once resumed, is legitimate; the
// zombie case needs a worker frozen with claims and no transaction. It
// finds the worker's connections by their local ports in the server's
// session list (workers on the loopback, no proxy); the autocommit
// statements of the executions table do not count.
type inTxCheck struct {
	db    *sql.DB
	query string
}

func newInTxCheck(sc storeConfig) (*inTxCheck, error) {
	ck := &inTxCheck{}
	var err error
	switch sc.Kind {
	case "postgres":
		ck.db, err = sql.Open("pgx", sc.DSN)
		ck.query = `SELECT COUNT(*) FROM pg_stat_activity WHERE xact_start IS NOT NULL AND query NOT LIKE '%chaos_executions%'
AND client_port::text = ANY(string_to_array($1, ','))`
	case "mysql":
		ck.db, err = sql.Open("mysql", sc.DSN)
		ck.query = `SELECT COUNT(*) FROM information_schema.innodb_trx t
JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id WHERE FIND_IN_SET(SUBSTRING_INDEX(p.host, ':', -1), ?) > 0 AND t.trx_rows_locked > 0
AND (p.info IS NULL OR p.info NOT LIKE '%chaos_executions%')`
	default:
		return nil, fmt.Errorf("no transaction check on %s", sc.Kind)
	}
	if err != nil {
		return nil, err
	}
	ck.db.SetMaxOpenConns(1)
	return ck, nil
}

// open reports whether pid has a transaction open.
func (ck *inTxCheck) open(pid int) (bool, error) {
	ports, err := localPorts(pid)
	if err != nil {
		return false, err
	}
	if len(ports) == 0 {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var n int
	if err := ck.db.QueryRowContext(ctx, ck.query, strings.Join(ports, ",")).Scan(&n); err != nil {
		return false, err
	}
	return n > 0, nil
}

// localPorts lists the local TCP ports of pid's sockets.
func localPorts(pid int) ([]string, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, err
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		l, err := os.Readlink(filepath.Join(fmt.Sprintf("/proc/%d/fd", pid), fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	var ports []string
	for _, f := range []string{"tcp", "tcp6"} {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(raw), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) < 10 || !inodes[fields[9]] {
				continue
			}
			i := strings.LastIndexByte(fields[1], ':')
			port, err := strconv.ParseUint(fields[1][i+1:], 16, 16)
			if err == nil {
				ports = append(ports, strconv.FormatUint(port, 10))
			}
		}
	}
	return ports, nil
}
