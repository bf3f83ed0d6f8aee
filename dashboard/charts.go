package dashboard

import (
	"fmt"
	"strings"

	"github.com/ductwork-go/ductwork/readmodel"
)

const chartW, chartH, chartPad = 360, 72, 14

// drawChart draws one series of a's buckets (completed or failed
// executions) as a small bar chart: one bar per bucket, the oldest on the
// left, scaled to the largest bucket, each with its count in a title.
func drawChart(a *readmodel.Activity, series, colour string) string {
	n := len(a.Buckets)
	values := make([]int, n)
	top := 0
	for i, b := range a.Buckets {
		if series == "failed" {
			values[i] = b.Failed
		} else {
			values[i] = b.Completed
		}
		top = max(top, values[i])
	}
	var sb strings.Builder
	total := 0
	for _, v := range values {
		total += v
	}
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-%s" role="img" aria-label="%s executions per %s over the last %s: %d in all" width="%d" height="%d" viewBox="0 0 %d %d" data-total="%d">`,
		series, series, a.Step, a.To.Sub(a.From), total, chartW, chartH+chartPad, chartW, chartH+chartPad, total)
	fmt.Fprintf(&sb, `<line x1="0" y1="%d" x2="%d" y2="%d" stroke="#ced4da"/>`, chartH, chartW, chartH)
	if n > 0 {
		bw := float64(chartW) / float64(n)
		for i, v := range values {
			h := 0.0
			if top > 0 {
				h = float64(chartH-4) * float64(v) / float64(top)
			}
			if v > 0 && h < 1 {
				h = 1
			}
			b := a.Buckets[i]
			fmt.Fprintf(&sb, `<rect class="bar" data-value="%d" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s–%s: %d %s</title></rect>`,
				v, float64(i)*bw+0.5, float64(chartH)-h, max(bw-1, 0.5), h, colour,
				b.Start.Format("15:04"), b.Start.Add(a.Step).Format("15:04"), v, series)
		}
	}
	fmt.Fprintf(&sb, `<text x="0" y="%d" font-size="10" fill="#868e96">%s</text>`, chartH+chartPad-2, a.From.Format("15:04"))
	fmt.Fprintf(&sb, `<text x="%d" y="%d" font-size="10" fill="#868e96" text-anchor="end">%s</text>`, chartW, chartH+chartPad-2, a.To.Format("15:04"))
	fmt.Fprintf(&sb, `<text x="2" y="10" font-size="10" fill="#868e96">max %d/%s</text>`, top, shortStep(a))
	sb.WriteString(`</svg>`)
	return sb.String()
}

// shortStep is the bucket width as a unit ("min", or the duration).
func shortStep(a *readmodel.Activity) string {
	if a.Step.Minutes() == 1 {
		return "min"
	}
	return a.Step.String()
}
