package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// ClusterError is returned by Migrate when the server is a node of a
// MariaDB Galera cluster configured in a way under which the backend's
// guarantees cannot hold. It names the setting, its value, the value needed
// and why.
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

// checkCluster detects a Galera node (wsrep_on) and checks the settings the
// backend relies on there. On a plain server it does nothing. On a node it
// logs, once per Migrate, what a user must know (see "MySQL on a Galera
// cluster" in docs/BACKEND-SEMANTICS.md): the migration lock is the node's
// own, the clocks of the nodes must agree, and a read through one node may
// not yet see a commit made through another unless wsrep_sync_wait is set.
func (b *Backend) checkCluster(ctx context.Context, conn *sql.Conn) error {
	vars := map[string]string{}
	rows, err := conn.QueryContext(ctx, "SHOW VARIABLES WHERE Variable_name IN ('wsrep_on', 'wsrep_osu_method', 'binlog_format', 'wsrep_sync_wait', 'wsrep_cluster_name')")
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
	if !strings.EqualFold(vars["wsrep_on"], "ON") {
		return nil
	}
	for _, r := range galeraRequirements {
		if v := vars[r.setting]; !strings.EqualFold(v, r.want) {
			return &ClusterError{Setting: r.setting, Value: v, Want: r.want, Reason: r.reason}
		}
	}
	b.cfg.Logger.InfoContext(ctx, "ductwork/mysql: Galera cluster node: claims and fenced commits are certified cluster-wide "+
		"(a conflict loses with a deadlock and is retried); run Migrate through one node at a time (its lock is per node); "+
		"keep the nodes' clocks in step (NTP: skew adds to the reap threshold); set wsrep_sync_wait=1 in the DSN "+
		"for tools that must read their own writes through another node",
		slog.String("cluster", vars["wsrep_cluster_name"]), slog.String("wsrep_sync_wait", vars["wsrep_sync_wait"]))
	return nil
}
