package ductworktype_test

import (
	"testing"

	"github.com/ductwork-go/ductwork/ductworktype"
)

func TestRunStatuses(t *testing.T) {
	terminal := map[ductworktype.RunStatus]bool{ductworktype.RunCompleted: true, ductworktype.RunHalted: true, ductworktype.RunCancelled: true}
	for _, s := range ductworktype.RunStatuses() {
		if !s.Valid() {
			t.Errorf("%s.Valid() = false", s)
		}
		if s.Terminal() != terminal[s] {
			t.Errorf("%s.Terminal() = %t; want %t", s, s.Terminal(), terminal[s])
		}
	}
	for _, s := range []ductworktype.RunStatus{"", "pending", "Running"} {
		if s.Valid() || s.Terminal() {
			t.Errorf("%q: Valid %t, Terminal %t; want false, false", s, s.Valid(), s.Terminal())
		}
	}
}

func TestStepStatuses(t *testing.T) {
	terminal := map[ductworktype.StepStatus]bool{ductworktype.StepCompleted: true, ductworktype.StepFailed: true, ductworktype.StepCancelled: true}
	for _, s := range ductworktype.StepStatuses() {
		if !s.Valid() {
			t.Errorf("%s.Valid() = false", s)
		}
		if s.Terminal() != terminal[s] {
			t.Errorf("%s.Terminal() = %t; want %t", s, s.Terminal(), terminal[s])
		}
	}
	if s := ductworktype.StepStatus("halted"); s.Valid() {
		t.Errorf("%q.Valid() = true", s)
	}
}
