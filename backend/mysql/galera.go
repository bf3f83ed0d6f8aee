package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/ductwork-go/ductwork/backend"
)

// ClusterError is returned by Migrate and RegisterProcess when the server is
// a node of a MariaDB Galera cluster configured, or connected to, in a way
// under which the backend's guarantees cannot hold. It names the setting,
// its value, the value needed and why. It is permanent (backend.IsPermanent):
// no retry changes it.
type ClusterError struct {
	Setting, Value, Want, Reason string
}

// Error implements error.
func (e *ClusterError) Error() string {
	return fmt.Sprintf("ductwork/mysql: Galera cluster: %s is %s, want %s: %s", e.Setting, e.Value, e.Want, e.Reason)
}

// galeraRequirements are the settings of a Galera node the backend relies
// on, with the reason. Galera itself needs ROW binary logging; the backend
// needs schema changes applied in total order on every node (TOI): under
// RSU a migration would change one node's schema only, and the nodes would
// then disagree about the tables every transaction writes.
var galeraRequirements = []struct{ setting, want, reason string }{
	{"wsrep_osu_method", "TOI", "migrations must change the schema on every node at once (RSU applies DDL to one node only)"},
	{"binlog_format", "ROW", "Galera replicates row images; other formats lose writes"},
}

// syncWaitCausal are the bits of wsrep_sync_wait the backend needs on a
// Galera node: 1 (reads, and the start of a transaction) and 2 (UPDATE and
// DELETE) wait until the node has applied every write set the cluster had
// committed when the statement began.
const syncWaitCausal = 3

// syncWaitReason says why: without causal reads a node that has just
// rejoined (or lags) serves claims from a stale copy. The chaos command
// found two executions under one claim that way (a worker on a node that had
// rejoined after a SIGKILL); with wsrep_sync_wait=3 every run held.
const syncWaitReason = "claims must read the cluster's latest state: a node that lags or has just rejoined " +
	"otherwise hands out a claim another node already holds; add wsrep_sync_wait=3 to the DSN " +
	"(or set it globally on every node)"

// varQuerier is what checkCluster reads through: a pinned *sql.Conn at
// Migrate, the pool at RegisterProcess.
type varQuerier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// checkCluster detects a Galera node (wsrep_on) and checks the settings the
// backend relies on there, for the session it reads through (the DSN's
// session variables count). On a plain server it does nothing. On a node it
// logs, when logOK, what a user must know (see "MySQL on a Galera cluster"
// in docs/BACKEND-SEMANTICS.md): the migration lock is the node's own and
// the clocks of the nodes must agree.
func (b *Backend) checkCluster(ctx context.Context, conn varQuerier, logOK bool) error {
	vars := map[string]string{}
	rows, err := conn.QueryContext(ctx, "SHOW VARIABLES WHERE Variable_name IN ('wsrep_on', 'wsrep_osu_method', 'binlog_format', 'wsrep_sync_wait', 'wsrep_cluster_name', 'version')")
	if err != nil {
		return err
	}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			rows.Close()
			return err
		}
		vars[strings.ToLower(k)] = v
	}
	if err := errors.Join(rows.Close(), rows.Err()); err != nil {
		return err
	}
	b.setVersion(vars["version"], strings.EqualFold(vars["wsrep_on"], "ON"))
	if !strings.EqualFold(vars["wsrep_on"], "ON") {
		return nil
	}
	for _, r := range galeraRequirements {
		if v := vars[r.setting]; !strings.EqualFold(v, r.want) {
			return &ClusterError{Setting: r.setting, Value: v, Want: r.want, Reason: r.reason}
		}
	}
	if sw, err := strconv.Atoi(vars["wsrep_sync_wait"]); err != nil || sw&syncWaitCausal != syncWaitCausal {
		return &ClusterError{Setting: "wsrep_sync_wait", Value: vars["wsrep_sync_wait"],
			Want: "3 (any value with bits 1 and 2)", Reason: syncWaitReason}
	}
	if logOK {
		b.cfg.Logger.InfoContext(ctx, "ductwork/mysql: Galera cluster node: claims and fenced commits are certified cluster-wide "+
			"(a conflict loses with a deadlock and is retried); run Migrate through one node at a time (its lock is per node); "+
			"keep the nodes' clocks in step (NTP: skew adds to the reap threshold)",
			slog.String("cluster", vars["wsrep_cluster_name"]), slog.String("wsrep_sync_wait", vars["wsrep_sync_wait"]))
	}
	return nil
}

// checkClusterOnce runs checkCluster through the pool the first time a
// process registers with this Backend (every supervisor does, whether or not
// it ran Migrate, and its DSN may differ from the migrating one's). A
// refusal is permanent; a failed read is retried at the next registration.
func (b *Backend) checkClusterOnce(ctx context.Context) error {
	if b.clusterChecked.Load() {
		return nil
	}
	if err := b.checkCluster(ctx, b.db, false); err != nil {
		var ce *ClusterError
		if errors.As(err, &ce) {
			return backend.Permanent(ce)
		}
		return err
	}
	b.clusterChecked.Store(true)
	return nil
}

// insertReturning reports whether a server of the version string v runs
// INSERT ... RETURNING: MariaDB from 10.5 (a version such as
// "10.11.19-MariaDB-0+deb12u1"); MySQL never.
func insertReturning(v string) bool {
	if !strings.Contains(strings.ToLower(v), "mariadb") {
		return false
	}
	major, rest, _ := strings.Cut(v, ".")
	minor, _, _ := strings.Cut(rest, ".")
	ma, err1 := strconv.Atoi(major)
	mi, err2 := strconv.Atoi(minor)
	return err1 == nil && err2 == nil && (ma > 10 || ma == 10 && mi >= 5)
}

// setVersion records what the server of version string v can do. On a
// Galera node (galera) the backend does not use INSERT ... RETURNING: with
// the statements that need it (a group's new jobs and arrivals as sets,
// grouped triggers), the chaos command's node-kill run on a three-node
// cluster found two executions under one claim in 2 runs of 3 (none in 6
// runs without them); the cause is not known.
func (b *Backend) setVersion(v string, galera bool) {
	if b.forceVersion != "" {
		v, galera = b.forceVersion, false
	}
	b.returning.Store(insertReturning(v) && !galera)
	b.versionKnown.Store(true)
}

// canReturn reports whether the backend uses INSERT ... RETURNING, reading
// the server's version the first time it is asked (Migrate and the first
// registration read it too). A failed read answers false and is tried again
// next time.
func (b *Backend) canReturn(ctx context.Context) bool {
	if !b.versionKnown.Load() {
		rows, err := b.db.QueryContext(ctx, "SHOW VARIABLES WHERE Variable_name IN ('version', 'wsrep_on')")
		if err != nil {
			return false
		}
		vars := map[string]string{}
		for rows.Next() {
			var k, v string
			if err := rows.Scan(&k, &v); err != nil {
				rows.Close()
				return false
			}
			vars[strings.ToLower(k)] = v
		}
		if errors.Join(rows.Close(), rows.Err()) != nil {
			return false
		}
		b.setVersion(vars["version"], strings.EqualFold(vars["wsrep_on"], "ON"))
	}
	return b.returning.Load()
}
