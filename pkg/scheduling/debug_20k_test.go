package scheduling_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/backstop-sh/backstop/pkg/scheduling"
)

func TestDebug20k(t *testing.T) {
	if os.Getenv("DEBUG20K") == "" {
		t.Skip()
	}
	types, _ := loadKarpenterInstanceTypes()
	pods, _ := loadKarpenterPods(os.Getenv("DEBUG20K"))
	plan := scheduling.Solve(&scheduling.Input{Pods: pods, NodePools: []*scheduling.NodePool{karpenterPool(types)}})
	for i, c := range plan.NewNodeClaims {
		nginx := 0
		for _, p := range c.Pods {
			if p.Labels["app"] == "nginx" {
				nginx++
			}
		}
		if nginx == 0 {
			fmt.Printf("claim %d: %d pods, reqs %s\n", i, len(c.Pods), c.Requirements.Labels())
			for _, p := range c.Pods {
				fmt.Printf("   %s %v %v %v\n", p.Name, p.Labels, p.Spec.TopologySpreadConstraints, p.Spec.Containers[0].Resources.Requests)
			}
		}
	}
}
