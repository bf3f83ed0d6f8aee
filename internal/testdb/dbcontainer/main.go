// Command dbcontainer starts a database server in a Docker container for the
// tests of github.com/ductwork-go/ductwork. Package internal/testdb runs it
// with `go run` when DUCTWORK_TEST_POSTGRES_DSN or DUCTWORK_TEST_MYSQL_DSN is
// unset and a Docker engine may be reachable:
//
//	go run . postgres   # PostgreSQL 17
//	go run . mariadb    # MariaDB 11.4
//
// It prints one line on standard output, then stays up:
//
//	dsn <DSN>            the server accepts connections at DSN
//	unavailable <why>    no Docker engine answers (exit status 0)
//	error <why>          the container did not start (exit status 1)
//
// It stops and removes the container when its standard input closes (the
// test binary holding the other end exited) or on SIGINT or SIGTERM;
// testcontainers' reaper removes it should the command die first.
//
// It is a module of its own so that testcontainers-go and the Docker client
// are not requirements of the library's module (see ARCHITECTURE.md).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	_ "github.com/go-sql-driver/mysql" // for the MariaDB wait strategy
	"github.com/moby/moby/api/types/network"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/modules/postgres"
	"github.com/testcontainers/testcontainers-go/wait"
)

// starters start a server of each kind and return its container and DSN.
var starters = map[string]func(context.Context) (testcontainers.Container, string, error){
	"postgres": startPostgres,
	"mariadb":  startMariaDB,
}

func main() {
	// The test binary may exit, closing the other ends of our pipes, while
	// we stop the container: a write to them must fail, not kill us.
	signal.Ignore(syscall.SIGPIPE)
	var start func(context.Context) (testcontainers.Container, string, error)
	if len(os.Args) == 2 {
		start = starters[os.Args[1]]
	}
	if start == nil {
		fmt.Fprintln(os.Stderr, "usage: dbcontainer postgres|mariadb")
		os.Exit(2)
	}
	if err := engine(); err != nil {
		fmt.Printf("unavailable %s\n", oneLine(err))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	c, dsn, err := start(ctx)
	cancel()
	if err != nil {
		_ = testcontainers.TerminateContainer(c)
		fmt.Printf("error %s\n", oneLine(err))
		os.Exit(1)
	}
	fmt.Printf("dsn %s\n", dsn)

	stdinClosed := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stdinClosed)
	}()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	select {
	case <-stdinClosed:
	case <-stop:
	}
	if err := testcontainers.TerminateContainer(c); err != nil {
		fmt.Fprintf(os.Stderr, "dbcontainer: %v\n", err)
		os.Exit(1)
	}
}

// engine reports whether a Docker engine answers.
func engine() (err error) {
	defer func() {
		if r := recover(); r != nil { // testcontainers panics on some configurations
			err = fmt.Errorf("testcontainers: %v", r)
		}
	}()
	provider, err := testcontainers.ProviderDefault.GetProvider()
	if err != nil {
		return err
	}
	defer func() { _ = provider.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return provider.Health(ctx)
}

func startPostgres(ctx context.Context) (testcontainers.Container, string, error) {
	c, err := postgres.Run(ctx, "postgres:17-alpine",
		postgres.WithDatabase("test"),
		postgres.WithUsername("postgres"),
		postgres.WithPassword("postgres"),
		postgres.BasicWaitStrategies(),
	)
	if err != nil {
		return c, "", err
	}
	dsn, err := c.ConnectionString(ctx, "sslmode=disable")
	return c, dsn, err
}

func startMariaDB(ctx context.Context) (testcontainers.Container, string, error) {
	url := func(host string, port network.Port) string {
		return fmt.Sprintf("root@tcp(%s:%s)/", host, port.Port())
	}
	c, err := testcontainers.Run(ctx, "mariadb:11.4",
		testcontainers.WithEnv(map[string]string{"MARIADB_ALLOW_EMPTY_ROOT_PASSWORD": "1"}),
		testcontainers.WithExposedPorts("3306/tcp"),
		testcontainers.WithWaitStrategy(wait.ForSQL("3306/tcp", "mysql", url).WithStartupTimeout(3*time.Minute)),
	)
	if err != nil {
		return c, "", err
	}
	host, err := c.Host(ctx)
	if err != nil {
		return c, "", err
	}
	port, err := c.MappedPort(ctx, "3306/tcp")
	if err != nil {
		return c, "", err
	}
	return c, url(host, port), nil
}

// oneLine keeps a message on the one line the protocol allows.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
