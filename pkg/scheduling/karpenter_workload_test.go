package scheduling_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/backstop-sh/backstop/pkg/scheduling"
	"github.com/backstop-sh/backstop/test/plancheck"
)

var _ = Describe("Karpenter's benchmark workload", func() {
	for _, file := range []string{"pods-diverse-100.json.gz", "pods-diverse-1000.json.gz"} {
		It("places every pod of "+file+" in a plan the independent checker accepts, on no more nodes than the anti-affinity floor", func() {
			types, err := loadKarpenterInstanceTypes()
			Expect(err).NotTo(HaveOccurred())
			pods, err := loadKarpenterPods(file)
			Expect(err).NotTo(HaveOccurred())
			in := &scheduling.Input{Pods: pods, NodePools: []*scheduling.NodePool{karpenterPool(types)}}
			plan := scheduling.Solve(in)
			Expect(plan.Unschedulable).To(BeEmpty())
			errs := plancheck.Check(in, plan)
			Expect(errs).To(BeEmpty(), plancheck.Summary(errs))
			// One node per hostname anti-affinity pod (a fifth of the pods) is the floor.
			Expect(plan.NewNodeClaims).To(HaveLen(len(pods) / 5))
		})
	}
})
