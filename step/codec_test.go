package step_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/ductwork-go/ductwork/step"
)

type (
	withFunc    struct{ F func() }
	withChan    struct{ C chan int }
	withComplex struct{ Z complex128 }
	structKey   struct{ A int }
	withMap     struct{ M map[structKey]string }
	deep        struct {
		Name  string
		Items []item
	}
	item   struct{ Parts map[string][]inner }
	inner  struct{ Callback func(int) int }
	ignore struct {
		Skipped  func()    `json:"-"`
		internal chan bool //nolint:unused // present to show unexported fields are ignored
		Kept     string
	}
	tree struct {
		Value    int
		Children []*tree
		Parent   *tree
	}
	listA struct{ Next *listB }
	listB struct{ Next *listA }

	// marshalsItself holds a func but encodes itself.
	marshalsItself struct{ F func() }
	// ptrMarshaler encodes itself through a pointer receiver.
	ptrMarshaler struct{ F func() }
	// textKey is a struct usable as a map key through encoding.TextMarshaler.
	textKey struct{ A, B int }
)

func (marshalsItself) MarshalJSON() ([]byte, error) { return []byte(`"self"`), nil }
func (*ptrMarshaler) MarshalJSON() ([]byte, error)  { return []byte(`"self"`), nil }
func (k textKey) MarshalText() ([]byte, error)      { return []byte("k"), nil }

func TestJSONCheckRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		typ  reflect.Type
		path []string // fragments the error must name
	}{
		{"func", reflect.TypeFor[func()](), []string{"func"}},
		{"chan", reflect.TypeFor[chan int](), []string{"chan"}},
		{"complex64", reflect.TypeFor[complex64](), []string{"complex64"}},
		{"complex128", reflect.TypeFor[complex128](), []string{"complex128"}},
		{"map with struct keys", reflect.TypeFor[map[structKey]int](), []string{"map key", "structKey"}},
		{"func in struct", reflect.TypeFor[withFunc](), []string{"withFunc.F"}},
		{"chan in struct", reflect.TypeFor[withChan](), []string{"withChan.C"}},
		{"complex in struct", reflect.TypeFor[withComplex](), []string{"withComplex.Z"}},
		{"struct-keyed map in struct", reflect.TypeFor[withMap](), []string{"withMap.M", "structKey"}},
		{"func in slice", reflect.TypeFor[[]func()](), []string{"[elem]"}},
		{"struct in slice", reflect.TypeFor[[]withChan](), []string{"[elem].C"}},
		{"struct in array", reflect.TypeFor[[2]withFunc](), []string{"[elem].F"}},
		{"struct behind pointer", reflect.TypeFor[*withComplex](), []string{".Z"}},
		{"map value", reflect.TypeFor[map[string]withFunc](), []string{"[value].F"}},
		{"deeply nested", reflect.TypeFor[deep](), []string{"deep.Items[elem].Parts[value][elem].Callback"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := step.JSON.Check(tc.typ)
			if err == nil {
				t.Fatalf("Check(%v) = nil; want an error", tc.typ)
			}
			for _, frag := range tc.path {
				if !strings.Contains(err.Error(), frag) {
					t.Errorf("Check(%v) = %q; want it to name %q", tc.typ, err, frag)
				}
			}
		})
	}
}

func TestJSONCheckAccepts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		typ   reflect.Type
		value any // encoded to confirm encoding/json agrees; nil skips
	}{
		{"scalars", reflect.TypeFor[struct {
			A int
			B string
			C float64
			D bool
			E []byte
		}](), nil},
		{"int-keyed map", reflect.TypeFor[map[int64][]string](), map[int64][]string{1: {"a"}}},
		{"text-marshaling keys", reflect.TypeFor[map[textKey]int](), map[textKey]int{{1, 2}: 3}},
		{"recursive through pointer and slice", reflect.TypeFor[tree](), tree{Value: 1, Children: []*tree{{Value: 2}}}},
		{"mutually recursive", reflect.TypeFor[listA](), listA{Next: &listB{}}},
		{"json.Marshaler", reflect.TypeFor[marshalsItself](), marshalsItself{}},
		{"json.Marshaler in a slice", reflect.TypeFor[[]marshalsItself](), []marshalsItself{{}}},
		{"pointer to a pointer-receiver json.Marshaler", reflect.TypeFor[*ptrMarshaler](), &ptrMarshaler{}},
		{"skipped and unexported fields", reflect.TypeFor[ignore](), ignore{Kept: "x"}},
		{"interface", reflect.TypeFor[any](), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := step.JSON.Check(tc.typ); err != nil {
				t.Fatalf("Check(%v) = %v; want nil", tc.typ, err)
			}
			if tc.value != nil {
				if _, err := step.JSON.Marshal(tc.value); err != nil {
					t.Fatalf("Check accepts %v but Marshal fails: %v", tc.typ, err)
				}
			}
		})
	}
}

type (
	hiddenFunc     struct{ F func() }
	embedsHidden   struct{ hiddenFunc }
	valueOfPtrMarh struct{ P ptrMarshaler }
)

// TestJSONCheckAgreesWithMarshal: a type Check accepts must encode. Two
// cases do not: exported fields promoted from an unexported embedded struct
// (encoding/json encodes them, Check skips the unexported field), and a
// value whose MarshalJSON has a pointer receiver (encoding/json cannot call
// it on the non-addressable value the engine hands it, and encodes the
// fields instead).
func TestJSONCheckAgreesWithMarshal(t *testing.T) {
	for name, v := range map[string]any{
		"unexported embedded struct":                                    embedsHidden{},
		"pointer-receiver MarshalJSON on a value":                       ptrMarshaler{},
		"pointer-receiver MarshalJSON in a field":                       valueOfPtrMarh{},
		"pointer-receiver MarshalJSON in a slice (addressable, agrees)": []ptrMarshaler{{}},
	} {
		t.Run(name, func(t *testing.T) {
			_, merr := json.Marshal(v)
			cerr := step.JSON.Check(reflect.TypeOf(v))
			if (merr == nil) != (cerr == nil) {
				t.Errorf("%T: Check = %v but json.Marshal = %v", v, cerr, merr)
			}
		})
	}
}
