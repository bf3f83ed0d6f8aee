package supervisor_test

import (
	"testing"

	"github.com/ductwork-go/ductwork/internal/leakcheck"
)

func TestMain(m *testing.M) {
	leakcheck.Main(m,
		// The fault proxy's (toxiproxy's) own stub goroutine can stay blocked
		// on a link whose connection was cut while data was in flight. It
		// belongs to the test proxy, not to the library; every goroutine of
		// the library is still checked.
		leakcheck.IgnoreTopFunction("github.com/Shopify/toxiproxy/v2/toxics.(*NoopToxic).Pipe"),
		// The latency toxic's stub, the same way (seen after repeated
		// TestNetLatencyMakesProgress runs on MariaDB).
		leakcheck.IgnoreTopFunction("github.com/Shopify/toxiproxy/v2/toxics.(*LatencyToxic).Pipe"),
		// The same for the test proxy's own commit-cut toxic, blocked handing
		// a chunk to a link that was torn down.
		leakcheck.IgnoreTopFunction("github.com/ductwork-go/ductwork/internal/faultproxy.(*cutToxic).Pipe"),
		// forwardEach is the loop of the count and reply-cut toxics.
		leakcheck.IgnoreTopFunction("github.com/ductwork-go/ductwork/internal/faultproxy.forwardEach"),
		leakcheck.IgnoreTopFunction("github.com/ductwork-go/ductwork/internal/faultproxy.(*holdToxic).Pipe"))
}
