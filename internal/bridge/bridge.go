// Package bridge lets package supervisor reach the engine inside a
// ductwork.Client without the engine being part of the public API.
package bridge

import "github.com/ductwork-go/ductwork/internal/engine"

// EngineOf returns the engine of a *ductwork.Client. Package ductwork sets it
// in its init function.
var EngineOf func(client any) *engine.Engine
