package ductworktest_test

import (
	"testing"

	"github.com/ductwork-go/ductwork/internal/leakcheck"
)

func TestMain(m *testing.M) {
	leakcheck.Main(m)
}
