package flow_test

import (
	"fmt"
	"strings"

	"github.com/ductwork-go/ductwork/flow"
	"github.com/ductwork-go/ductwork/step"
)

// A pipeline that fans out over the words of a sentence, routes each word by
// its length, and gathers the results in order. Define validates the shape;
// node IDs are the step names.
func ExampleDefine() {
	split := step.New("split", func(_ step.Context, s string) ([]string, error) { return strings.Fields(s), nil })
	word := step.New("word", func(_ step.Context, w string) (string, error) { return w, nil })
	short := step.New("short", func(_ step.Context, w string) (string, error) { return w, nil })
	long := step.New("long", func(_ step.Context, w string) (string, error) { return strings.ToUpper(w), nil })
	tidy := step.New("tidy", func(_ step.Context, w string) (string, error) { return w, nil })
	join := step.New("join", func(_ step.Context, ws []string) (string, error) { return strings.Join(ws, " "), nil })

	def, err := flow.Define("shout-long-words", func(p *flow.Pipeline[string]) flow.End[string] {
		words := flow.Expand(flow.Start(p, split), word)
		d := flow.Divert(words, func(w string) string {
			if len(w) > 4 {
				return "long"
			}
			return "short"
		})
		routed := flow.Converge(tidy, flow.Case(d, "long", long), flow.Otherwise(d, short))
		return flow.Collapse(routed, join)
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(def.Name(), def.NodeIDs())
	// Output: shout-long-words [split word long short tidy join]
}
