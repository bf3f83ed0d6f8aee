//go:build !ductwork_crashpoints

package crashpoint

// Compiled reports whether the crash points are compiled in.
const Compiled = false

// Enabled reports whether the process dies at name: never, in a build
// without the tag ductwork_crashpoints.
func Enabled(string) bool { return false }

// Hit does nothing in a build without the tag ductwork_crashpoints.
func Hit(string) {}
