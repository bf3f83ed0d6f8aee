package main

import (
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ductwork-go/ductwork/internal/netns"
)

func TestBadNetworkFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-backend", "sqlite", "-netfaults", "all"},
		{"-backend", "sqlite", "-hosts", "2"},
		{"-backend", "postgres", "-netfaults", "latency,flood"},
		{"-backend", "postgres", "-netfaults", "partition"}, // needs -hosts
		{"-backend", "postgres", "-hosts", "-1"},
		{"-backend", "sqlite", "-nodes", "127.0.0.1:1"},
		{"-backend", "mysql", "-nodes", "node1"},
		{"-backend", "mysql", "-nodes", "127.0.0.1:1", "-hosts", "2"},
		{"-backend", "mysql", "-node-fault", "true"}, // no -node-heal
		{"-backend", "mysql", "-node-fault", "true", "-node-heal", "true", "-restart-db"},
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

// TestHostPartition: a host's process reaches a listener on its data link's
// root end; while the host is partitioned it does not (packets vanish: the
// connect times out); healed, it does again; teardown removes the namespace.
func TestHostPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("creates network namespaces")
	}
	hosts, teardown, err := netns.Setup(nsPrefix, 1)
	if err != nil {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	defer teardown()
	h := hosts[0]
	ln, err := net.Listen("tcp", net.JoinHostPort(h.DataAddr, "0"))
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
		cmd := h.Command("timeout")
		cmd.Args = append(cmd.Args, "2", "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%s", h.DataAddr, portOf(ln.Addr().String())))
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	}
	if err := reach(); err != nil {
		t.Fatalf("host cannot reach its link's root end: %v", err)
	}
	if err := h.Partition(); err != nil {
		t.Fatal(err)
	}
	if err := reach(); err == nil {
		t.Fatal("a partitioned host reached the root namespace")
	}
	if err := h.Heal(); err != nil {
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
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), h.NS) {
		t.Fatalf("namespace %s left after teardown", h.NS)
	}
}
