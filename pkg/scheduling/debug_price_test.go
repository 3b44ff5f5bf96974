package scheduling_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/backstop-sh/backstop/pkg/scheduling"
	"github.com/backstop-sh/backstop/test/plancheck"
)

func TestDebugPrice(t *testing.T) {
	if os.Getenv("DEBUGPRICE") == "" {
		t.Skip()
	}
	types, _ := loadKarpenterInstanceTypes()
	for _, f := range []string{"pods-diverse-100.json.gz", "pods-diverse-1000.json.gz", "pods-diverse-5000.json.gz", "pods-diverse-20000.json.gz", "pods-preference-4000.json.gz"} {
		pods, _ := loadKarpenterPods(f)
		for _, pol := range []scheduling.PreferencePolicy{scheduling.PreferencesRespect, scheduling.PreferencesIgnore} {
			plan := scheduling.Solve(&scheduling.Input{Pods: pods, NodePools: []*scheduling.NodePool{karpenterPool(types)}, PreferencePolicy: pol})
			hist := map[string]int{}
			for _, c := range plan.NewNodeClaims {
				it, _, _ := c.CheapestOffering()
				hist[it.Name]++
			}
			fmt.Printf("%s %s: %d claims $%.2f unsched=%d %v\n", f, pol, len(plan.NewNodeClaims), plan.Price(), len(plan.Unschedulable), len(hist))
		}
	}
}

func TestDebugCheckLarge(t *testing.T) {
	f := os.Getenv("DEBUGCHECK")
	if f == "" {
		t.Skip()
	}
	types, _ := loadKarpenterInstanceTypes()
	pods, _ := loadKarpenterPods(f)
	for _, pol := range []scheduling.PreferencePolicy{scheduling.PreferencesRespect, scheduling.PreferencesIgnore} {
		in := &scheduling.Input{Pods: pods, NodePools: []*scheduling.NodePool{karpenterPool(types)}, PreferencePolicy: pol}
		plan := scheduling.Solve(in)
		errs := plancheck.Check(in, plan)
		fmt.Printf("%s %s: %d violations\n%s\n", f, pol, len(errs), plancheck.Summary(errs))
	}
}
