package test

import (
	"github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
)

// Metric sums the counter and gauge values of the series of a metric whose
// labels include all of want, and says how many series matched.
func Metric(g prometheus.Gatherer, name string, want map[string]string) (float64, int) {
	families, err := g.Gather()
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	sum, n := 0.0, 0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.Metric {
			for k, v := range want {
				found := false
				for _, l := range m.Label {
					found = found || (l.GetName() == k && l.GetValue() == v)
				}
				if !found {
					continue series
				}
			}
			// A histogram counts its observations.
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
			n++
		}
	}
	return sum, n
}
