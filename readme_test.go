package ductwork_test

import (
	"os"
	"strings"
	"testing"
)

// TestReadmeFirstBlockIsTheExample keeps the README's first code block
// identical to examples/readme/main.go, which go vet and CI compile, so the
// block cannot rot.
func TestReadmeFirstBlockIsTheExample(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("examples/readme/main.go")
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	start := strings.Index(s, "```go\n")
	if start < 0 {
		t.Fatal("README.md has no Go code block")
	}
	block := s[start+len("```go\n"):]
	end := strings.Index(block, "```\n")
	if end < 0 {
		t.Fatal("README.md's first Go code block does not end")
	}
	if block[:end] != string(example) {
		t.Error("README.md's first Go code block differs from examples/readme/main.go; copy one to the other")
	}
}
