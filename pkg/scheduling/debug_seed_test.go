package scheduling_test

import (
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/backstop-sh/backstop/pkg/scheduling"
	"github.com/backstop-sh/backstop/test/plancheck"
)

func TestDebugSeed(t *testing.T) {
	seed, err := strconv.ParseInt(os.Getenv("SEED"), 10, 64)
	if err != nil {
		t.Skip("set SEED")
	}
	in := randomInput(seed)
	plan := scheduling.Solve(in)
	for _, n := range in.Nodes {
		fmt.Printf("node %s zone=%s pods:", n.Name, n.Labels["topology.kubernetes.io/zone"])
		for _, p := range n.Pods {
			fmt.Printf(" %s/%s app=%s", p.Namespace, p.Name, p.Labels["app"])
		}
		fmt.Println()
	}
	for _, p := range in.NodePools {
		fmt.Printf("pool %s w=%d reqs=%s taints=%v limits=%v\n", p.Name, p.Weight, p.Requirements, p.Taints, p.Limits)
	}
	for _, s := range plan.Steps {
		p := s.Pod
		fmt.Printf("step %s/%s app=%s -> node=%q claim=%d sel=%v aff=%v\n", p.Namespace, p.Name, p.Labels["app"], s.Node, s.Claim, p.Spec.NodeSelector, p.Spec.Affinity)
	}
	for i, c := range plan.NewNodeClaims {
		fmt.Printf("claim %d pool=%s reqs=%s\n", i, c.NodePool, c.Requirements)
	}
	fmt.Println(plancheck.Summary(plancheck.Check(in, plan)))
}
