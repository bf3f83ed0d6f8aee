package faultproxy_test

import (
	"context"
	"database/sql"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/ductwork-go/ductwork/internal/faultproxy"
	"github.com/ductwork-go/ductwork/internal/testdb"
)

// TestCutCommitReplies: a transaction committed through CutCommitReplies
// (with probability 1) reaches the database, and its client gets an error,
// not the reply: an ambiguous commit, on PostgreSQL and on MariaDB.
func TestCutCommitReplies(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type tcase struct {
		upstream string
		// commit runs the transaction through the proxy at addr.
		commit func(addr string) error
		// count counts the committed rows, directly.
		count func() (int, error)
	}
	cases := map[string]tcase{}
	if os.Getenv(testdb.PostgresEnv) != "" {
		pool, schema := testdb.PostgresPool(t)
		table := pgx.Identifier{schema, "cut"}.Sanitize()
		if _, err := pool.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()+"; CREATE TABLE "+table+" (id INT)"); err != nil {
			t.Fatal(err)
		}
		cfg, err := pgx.ParseConfig(testdb.PostgresDSN(t))
		if err != nil {
			t.Fatal(err)
		}
		cases["postgres"] = tcase{
			upstream: net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))),
			commit: func(addr string) error {
				host, port, _ := net.SplitHostPort(addr)
				n, _ := strconv.Atoi(port)
				c := cfg.Copy()
				c.Host, c.Port, c.ConnectTimeout = host, uint16(n), 5*time.Second
				conn, err := pgx.ConnectConfig(ctx, c)
				if err != nil {
					return err
				}
				defer conn.Close(context.Background())
				// A pipelined batch, as the backend sends a completion: one
				// implicit transaction committed at its Sync.
				batch := &pgx.Batch{}
				batch.Queue("INSERT INTO " + table + " VALUES (1)")
				batch.Queue("UPDATE " + table + " SET id = 2")
				return conn.SendBatch(ctx, batch).Close()
			},
			count: func() (n int, err error) {
				err = pool.QueryRow(ctx, "SELECT COUNT(*) FROM "+table+" WHERE id = 2").Scan(&n)
				return n, err
			},
		}
	}
	if os.Getenv(testdb.MySQLEnv) != "" {
		db, name := testdb.MySQLDatabase(t)
		if _, err := db.ExecContext(ctx, "CREATE TABLE cut (id INT)"); err != nil {
			t.Fatal(err)
		}
		cfg, err := gomysql.ParseDSN(testdb.MySQLDSN(t))
		if err != nil {
			t.Fatal(err)
		}
		cases["mariadb"] = tcase{
			upstream: cfg.Addr,
			commit: func(addr string) error {
				c := cfg.Clone()
				c.Addr, c.DBName, c.Timeout = addr, name, 5*time.Second
				connector, err := gomysql.NewConnector(c)
				if err != nil {
					return err
				}
				db := sql.OpenDB(connector)
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
			count: func() (n int, err error) {
				err = db.QueryRowContext(ctx, "SELECT COUNT(*) FROM cut WHERE id = 2").Scan(&n)
				return n, err
			},
		}
	}
	if len(cases) == 0 {
		t.Skipf("set %s or %s", testdb.PostgresEnv, testdb.MySQLEnv)
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			p, err := faultproxy.Start(c.upstream)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			_, cuts, err := p.CutCommitReplies(1)
			if err != nil {
				t.Fatal(err)
			}
			err = c.commit(p.Addr())
			if err == nil {
				t.Fatal("the commit through the cut returned no error")
			}
			n, cerr := c.count()
			if cerr != nil {
				t.Fatal(cerr)
			}
			if n != 1 || cuts() != 1 {
				t.Fatalf("after a cut commit (client error %v): %d rows committed, %d cuts; want the row committed and one cut", err, n, cuts())
			}
		})
	}
}
