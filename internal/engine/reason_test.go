package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ductwork-go/ductwork/backend"
	"github.com/ductwork-go/ductwork/internal/graph"
	"github.com/ductwork-go/ductwork/step"
)

func TestSafeReason(t *testing.T) {
	for _, in := range []string{"plain", "nul\x00inside", "bad\xffutf8", strings.Repeat("é", MaxReasonBytes)} {
		out := SafeReason(in)
		if strings.ContainsRune(out, 0) || !utf8.ValidString(out) || len(out) > MaxReasonBytes+32 {
			t.Errorf("SafeReason(%.20q) = %.40q (%d bytes)", in, out, len(out))
		}
	}
	if SafeReason("plain") != "plain" {
		t.Error("a clean reason was changed")
	}
}

func TestCauseOf(t *testing.T) {
	for _, c := range []struct {
		err  error
		want backend.HaltCause
	}{
		{&step.PanicError{Value: "x"}, backend.HaltPanic},
		{&graph.DecodeError{Node: "n", Err: &step.PanicError{Value: "x"}}, backend.HaltPanic},
		{step.Permanent(errors.New("no")), backend.HaltPermanent},
		{&graph.CrashBudgetError{Node: "n"}, backend.HaltCrashBudget},
		{&graph.FanOutError{Node: "n"}, backend.HaltFanOut},
		{&graph.PayloadTooLargeError{Node: "n"}, backend.HaltTooLarge},
		{&graph.EncodeError{Node: "n", Err: errors.New("nan")}, backend.HaltEncode},
		{&graph.DecodeError{Node: "n", Err: errors.New("bad json")}, backend.HaltDecode},
		{fmt.Errorf("commit: %w", backend.Permanent(errors.New("too long"))), backend.HaltBackend},
		{fmt.Errorf("slow: %w", context.DeadlineExceeded), backend.HaltTimeout},
		{context.Canceled, backend.HaltCancelled},
		{&step.TimeoutError{Step: "n", Timeout: time.Second, Abandoned: true}, backend.HaltTimeout},
		{&step.TimeoutError{Step: "n", Timeout: time.Second, Err: errors.New("gave up")}, backend.HaltTimeout},
		{errors.New("flaky"), backend.HaltRetriesExhausted},
	} {
		if got := CauseOf(c.err); got != c.want {
			t.Errorf("CauseOf(%v) = %q; want %q", c.err, got, c.want)
		}
	}
}
