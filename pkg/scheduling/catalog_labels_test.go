package scheduling_test

import (
	"strconv"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

var _ = Describe("Karpenter's well-known instance labels over the real catalog", func() {
	It("plans a pool that asks for encryption in transit and a sustained clock above 3,400 MHz on such types only, and says so on the NodeClaim", func() {
		types, err := realCatalog(1)
		Expect(err).NotTo(HaveOccurred())
		pool := &scheduling.NodePool{Name: "fast", InstanceTypes: types, Requirements: scheduling.NewRequirements(
			scheduling.MustRequirement(aws.LabelInstanceEncryptionInTransitSupported, v1.OpIn, "true"),
			scheduling.MustRequirement(aws.LabelInstanceCPUSustainedClockSpeedMHz, v1.OpGt, "3400"))}
		var pods []*corev1.Pod
		for i := range 6 {
			pods = append(pods, simplePod("p"+strconv.Itoa(i), "3"))
		}
		plan := solveAndCheck(&scheduling.Input{Pods: pods, NodePools: []*scheduling.NodePool{pool}})
		Expect(plan.Unschedulable).To(BeEmpty())
		Expect(plan.NewNodeClaims).NotTo(BeEmpty())
		for _, nc := range plan.NewNodeClaims {
			for _, it := range nc.InstanceTypes {
				labels := it.Requirements.Labels()
				Expect(labels).To(HaveKeyWithValue(aws.LabelInstanceEncryptionInTransitSupported, "true"), it.Name)
				mhz, err := strconv.Atoi(labels[aws.LabelInstanceCPUSustainedClockSpeedMHz])
				Expect(err).NotTo(HaveOccurred(), it.Name)
				Expect(mhz).To(BeNumerically(">", 3400), it.Name)
			}
		}
		// A pod that asks for the opposite of the pool finds no type.
		slow := simplePod("slow", "1", func(p *corev1.Pod) {
			p.Spec.NodeSelector = map[string]string{aws.LabelInstanceEncryptionInTransitSupported: "false"}
		})
		plan = solveAndCheck(&scheduling.Input{Pods: []*corev1.Pod{slow}, NodePools: []*scheduling.NodePool{pool}})
		Expect(plan.NewNodeClaims).To(BeEmpty())
		Expect(plan.Unschedulable).To(HaveLen(1))
	})
})
