package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
)

// dockerCheck caches whether a Docker engine answers, for the whole binary.
var dockerCheck = sync.OnceValue(func() (err error) {
	defer func() {
		if r := recover(); r != nil {
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
})

// dockerOrSkip skips t, naming envVar, when no Docker engine is reachable.
func dockerOrSkip(t testing.TB, envVar string) {
	t.Helper()
	if err := dockerCheck(); err != nil {
		t.Skipf("%s is not set and no Docker engine is reachable to start one (%v); set %s to run this test",
			envVar, err, envVar)
	}
}

// container is a database server started once per test binary.
type container struct {
	once sync.Once
	dsn  string
	err  error
}

// get starts the server with start on first use and returns its DSN. The
// container outlives the test that started it; testcontainers' reaper
// removes it when the binary exits.
func (c *container) get(t testing.TB, envVar string, start func(context.Context) (string, error)) string {
	t.Helper()
	dockerOrSkip(t, envVar)
	c.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		c.dsn, c.err = start(ctx)
	})
	if c.err != nil {
		t.Fatalf("%s is not set and starting a container failed: %v", envVar, c.err)
	}
	return c.dsn
}

// randomName returns prefix followed by 16 random hex digits: a valid,
// unquoted identifier in PostgreSQL and MySQL.
func randomName(t testing.TB, prefix string) string {
	t.Helper()
	var buf [8]byte
	if _, err := rand.Read(buf[:]); err != nil {
		t.Fatalf("testdb: %v", err)
	}
	return prefix + hex.EncodeToString(buf[:])
}
