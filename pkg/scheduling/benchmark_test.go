package scheduling_test

import (
	"testing"
	"time"

	"github.com/backstop-sh/backstop/pkg/scheduling"
)

// BenchmarkKarpenterWorkload runs the scheduler on the exact input of
// Karpenter's BenchmarkScheduling* and reports pods/s, NodeClaims and the plan's
// hourly price next to B/op and allocs/op:
//
//	go test ./pkg/scheduling -run '^$' -bench KarpenterWorkload -benchmem
func BenchmarkKarpenterWorkload(b *testing.B) {
	types, err := loadKarpenterInstanceTypes()
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		file   string
		policy scheduling.PreferencePolicy
		name   string
	}{
		{"pods-diverse-100.json.gz", scheduling.PreferencesRespect, "diverse-100"},
		{"pods-diverse-1000.json.gz", scheduling.PreferencesRespect, "diverse-1000"},
		{"pods-diverse-5000.json.gz", scheduling.PreferencesRespect, "diverse-5000"},
		{"pods-diverse-20000.json.gz", scheduling.PreferencesRespect, "diverse-20000"},
		{"pods-preference-4000.json.gz", scheduling.PreferencesRespect, "preference-4000-respect"},
		{"pods-preference-4000.json.gz", scheduling.PreferencesIgnore, "preference-4000-ignore"},
	}
	for _, tc := range cases {
		pods, err := loadKarpenterPods(tc.file)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name, func(b *testing.B) {
			var plan *scheduling.Plan
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				plan = scheduling.Solve(&scheduling.Input{Pods: pods, NodePools: []*scheduling.NodePool{karpenterPool(types)}, PreferencePolicy: tc.policy})
			}
			reportPlan(b, plan, len(pods), time.Since(start))
		})
	}
}

// reportPlan reports throughput and the plan's size and price; a pod left out
// fails the benchmark, since its numbers would not compare.
func reportPlan(b *testing.B, plan *scheduling.Plan, pods int, elapsed time.Duration) {
	b.StopTimer()
	if len(plan.Unschedulable) > 0 {
		b.Fatalf("%d pods unschedulable, first: %s", len(plan.Unschedulable), plan.Unschedulable[0].Message(plan.PoolOrder))
	}
	b.ReportMetric(float64(pods*b.N)/elapsed.Seconds(), "pods/s")
	b.ReportMetric(float64(len(plan.NewNodeClaims)), "nodeclaims")
	b.ReportMetric(plan.Price(), "$/h")
}
