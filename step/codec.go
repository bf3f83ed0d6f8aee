package step

import (
	"encoding/json"
	"fmt"
	"reflect"
)

// Codec encodes step inputs and outputs for storage.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
	// Check reports whether values of type t can be encoded, at definition
	// time. It returns nil when they can.
	Check(t reflect.Type) error
}

// JSON is the default Codec, on encoding/json.
var JSON Codec = jsonCodec{}

type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

func (jsonCodec) Check(t reflect.Type) error {
	return checkJSON(t, map[reflect.Type]bool{}, t.String(), false)
}

// checkJSON walks t as encoding/json would. addressable tells whether values
// of t are reached through a pointer or a slice (then a pointer-receiver
// MarshalJSON is used): the top-level value and map values are not.
func checkJSON(t reflect.Type, seen map[reflect.Type]bool, path string, addressable bool) error {
	if seen[t] {
		return nil
	}
	seen[t] = true
	defer delete(seen, t) // the same type may be reachable both ways
	// Only a value receiver counts: steps' outputs reach the encoder as
	// non-addressable values, on which a pointer-receiver MarshalJSON is
	// not called.
	if t.Implements(jsonMarshalerType) || addressable && reflect.PointerTo(t).Implements(jsonMarshalerType) {
		return nil
	}
	switch t.Kind() {
	case reflect.Func, reflect.Chan, reflect.Complex64, reflect.Complex128, reflect.UnsafePointer:
		return fmt.Errorf("%s: a %s cannot be encoded as JSON", path, t.Kind())
	case reflect.Pointer, reflect.Slice:
		return checkJSON(t.Elem(), seen, path+"[elem]", true)
	case reflect.Array:
		return checkJSON(t.Elem(), seen, path+"[elem]", addressable)
	case reflect.Map:
		switch t.Key().Kind() {
		case reflect.String, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		default:
			if !t.Key().Implements(textMarshalerType) {
				return fmt.Errorf("%s: map key type %s cannot be encoded as JSON", path, t.Key())
			}
		}
		return checkJSON(t.Elem(), seen, path+"[value]", false)
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			// encoding/json encodes the exported fields promoted from an
			// embedded struct even when the embedded type is unexported.
			embeddedStruct := f.Anonymous && (f.Type.Kind() == reflect.Struct ||
				f.Type.Kind() == reflect.Pointer && f.Type.Elem().Kind() == reflect.Struct)
			if (!f.IsExported() && !embeddedStruct) || f.Tag.Get("json") == "-" {
				continue
			}
			if err := checkJSON(f.Type, seen, path+"."+f.Name, addressable); err != nil {
				return err
			}
		}
	}
	return nil
}

var (
	jsonMarshalerType = reflect.TypeFor[json.Marshaler]()
	textMarshalerType = reflect.TypeFor[interface{ MarshalText() ([]byte, error) }]()
)
