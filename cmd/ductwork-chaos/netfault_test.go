package main

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/ductwork-go/ductwork/internal/testdb"
)

func TestBadNetworkFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-backend", "sqlite", "-netfaults", "all"},
		{"-backend", "sqlite", "-hosts", "2"},
		{"-backend", "postgres", "-netfaults", "latency,flood"},
		{"-backend", "postgres", "-netfaults", "partition"}, // needs -hosts
		{"-backend", "postgres", "-hosts", "-1"},
	} {
		if _, err := parseFlags(args, &strings.Builder{}); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
	o, err := parseFlags([]string{"-backend", "postgres", "-hosts", "2", "-netfaults", "all"}, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.faults, ",") != strings.Join(allFaults, ",") {
		t.Errorf("-netfaults all with -hosts: %v, want %v", o.faults, allFaults)
	}
	o, err = parseFlags([]string{"-backend", "mysql", "-netfaults", "all"}, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range o.faults {
		if f == faultPartition {
			t.Errorf("-netfaults all without -hosts includes %s", f)
		}
	}
}

// cutCase is a backend's database for TestCommitCut.
type cutCase struct {
	name   string
	direct storeConfig
	// insertAndCommit runs the transaction through addr.
	insertAndCommit func(ctx context.Context, addr string) error
	// count counts the rows, directly.
	count func(ctx context.Context) (int, error)
}

// TestCommitCut: a transaction committed through the commitcut toxic (with
// probability 1) reaches the database, and its client gets an error, not
// the reply: an ambiguous commit, on PostgreSQL and on MariaDB.
func TestCommitCut(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var cases []cutCase
	if os.Getenv(testdb.PostgresEnv) != "" {
		pool, schema := testdb.PostgresPool(t)
		table := pgx.Identifier{schema, "cut"}.Sanitize()
		if _, err := pool.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()+"; CREATE TABLE "+table+" (id INT)"); err != nil {
			t.Fatal(err)
		}
		dsn := testdb.PostgresDSN(t)
		cases = append(cases, cutCase{
			name:   "postgres",
			direct: storeConfig{Kind: "postgres", DSN: dsn},
			insertAndCommit: func(ctx context.Context, addr string) error {
				sc, err := via(storeConfig{Kind: "postgres", DSN: dsn}, addr)
				if err != nil {
					return err
				}
				conn, err := pgx.Connect(ctx, sc.DSN)
				if err != nil {
					return err
				}
				defer conn.Close(context.Background())
				// A pipelined batch, as the backend sends a completion:
				// one implicit transaction committed at its Sync.
				batch := &pgx.Batch{}
				batch.Queue("INSERT INTO " + table + " VALUES (1)")
				batch.Queue("UPDATE " + table + " SET id = 2")
				return conn.SendBatch(ctx, batch).Close()
			},
			count: func(ctx context.Context) (int, error) {
				var n int
				err := pool.QueryRow(ctx, "SELECT COUNT(*) FROM "+table+" WHERE id = 2").Scan(&n)
				return n, err
			},
		})
	}
	if os.Getenv(testdb.MySQLEnv) != "" {
		db := testdb.MySQLDB(t)
		if _, err := db.ExecContext(ctx, "CREATE TABLE cut (id INT)"); err != nil {
			t.Fatal(err)
		}
		var name string
		if err := db.QueryRowContext(ctx, "SELECT DATABASE()").Scan(&name); err != nil {
			t.Fatal(err)
		}
		cfg, err := gomysql.ParseDSN(testdb.MySQLDSN(t))
		if err != nil {
			t.Fatal(err)
		}
		cfg.DBName = name
		dsn := cfg.FormatDSN()
		cases = append(cases, cutCase{
			name:   "mysql",
			direct: storeConfig{Kind: "mysql", DSN: dsn},
			insertAndCommit: func(ctx context.Context, addr string) error {
				sc, err := via(storeConfig{Kind: "mysql", DSN: dsn}, addr)
				if err != nil {
					return err
				}
				db, err := sql.Open("mysql", sc.DSN)
				if err != nil {
					return err
				}
				defer db.Close()
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, "INSERT INTO cut VALUES (2)"); err != nil {
					return err
				}
				return tx.Commit()
			},
			count: func(ctx context.Context) (int, error) {
				var n int
				err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM cut WHERE id = 2").Scan(&n)
				return n, err
			},
		})
	}
	if len(cases) == 0 {
		t.Skipf("set %s or %s", testdb.PostgresEnv, testdb.MySQLEnv)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			up, err := serverAddr(c.direct)
			if err != nil {
				t.Fatal(err)
			}
			ps := newProxies(up)
			defer ps.closeAll()
			name, addr, err := ps.add("127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			if err := ps.inject(faultCommitCut, []string{name}); err != nil {
				t.Fatal(err)
			}
			// The probability is the fault's; this test wants every commit cut.
			ps.heal()
			p := ps.list[name]
			if _, err := p.Toxics.AddToxicJson(strings.NewReader(`{"name":"cut_down","type":"commitcut","stream":"downstream","toxicity":1,"attributes":{"probability":1}}`)); err != nil {
				t.Fatal(err)
			}
			before := commitCuts.Load()
			err = c.insertAndCommit(ctx, addr)
			if err == nil {
				t.Fatal("the commit through the cut returned no error")
			}
			n, cerr := c.count(ctx)
			if cerr != nil {
				t.Fatal(cerr)
			}
			if n != 1 || commitCuts.Load() == before {
				t.Fatalf("after a cut commit (client error %v): %d rows committed, %d cuts; want the row committed and one cut", err, n, commitCuts.Load()-before)
			}
		})
	}
}

// TestHostPartition: a host's process reaches a listener on its data link's
// root end; while the host is partitioned it does not (packets vanish: the
// connect times out); healed, it does again; teardown removes the namespace.
func TestHostPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("creates network namespaces")
	}
	hosts, teardown, err := setupHosts(1)
	if err != nil {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	defer teardown()
	h := hosts[0]
	ln, err := net.Listen("tcp", net.JoinHostPort(h.dataAddr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	reach := func() error {
		// bash's /dev/tcp, run inside the namespace, with a 2s limit.
		cmd := h.command("timeout")
		cmd.Args = append(cmd.Args, "2", "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%s", h.dataAddr, portOf(ln.Addr().String())))
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	}
	if err := reach(); err != nil {
		t.Fatalf("host cannot reach its link's root end: %v", err)
	}
	if err := h.partition(); err != nil {
		t.Fatal(err)
	}
	if err := reach(); err == nil {
		t.Fatal("a partitioned host reached the root namespace")
	}
	if err := h.heal(); err != nil {
		t.Fatal(err)
	}
	// The neighbour entry that failed during the partition is resolved
	// again within a few seconds.
	deadline := time.Now().Add(20 * time.Second)
	for err := reach(); err != nil; err = reach() {
		if time.Now().After(deadline) {
			t.Fatalf("after the heal: %v", err)
		}
	}
	teardown()
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), h.ns) {
		t.Fatalf("namespace %s left after teardown", h.ns)
	}
}
