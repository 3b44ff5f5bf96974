package scheduling_test

import (
	"strconv"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

// partitionKey is the label a partition placement group's nodes carry; the
// AWS provider gives each type of such a group's class the requirement
// In [1..partitions], as below.
const partitionKey = "karpenter.k8s.aws/placement-group-partition"

var _ = Describe("a label whose value the instance type leaves open (placement-group partitions)", func() {
	var pool *scheduling.NodePool
	BeforeEach(func() {
		it := typeOf("m.large", "m", 2, 0.05, "zone-a", "zone-b")
		it.Requirements.Add(scheduling.MustRequirement(partitionKey, v1.OpIn, "1", "2", "3"))
		pool = &scheduling.NodePool{Name: "kafka", InstanceTypes: []*scheduling.InstanceType{it}}
	})

	It("pins a NodeClaim to the partition a pod selects", func() {
		pod := simplePod("broker", "1", func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{partitionKey: "2"} })
		plan := solveAndCheck(&scheduling.Input{Pods: []*corev1.Pod{pod}, NodePools: []*scheduling.NodePool{pool}})
		Expect(plan.NewNodeClaims).To(HaveLen(1), "%v", unschedulableReasons(plan))
		Expect(plan.NewNodeClaims[0].Requirements[partitionKey].Values()).To(Equal([]string{"2"}))
		Expect(plan.NewNodeClaims[0].Labels).To(HaveKeyWithValue(partitionKey, "2"))

		lost := simplePod("lost", "1", func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{partitionKey: "4"} })
		plan = solveAndCheck(&scheduling.Input{Pods: []*corev1.Pod{lost}, NodePools: []*scheduling.NodePool{pool}})
		Expect(plan.NewNodeClaims).To(BeEmpty(), "the group has three partitions")
	})

	It("spreads pods over the partitions, one NodeClaim pinned to each", func() {
		var pods []*corev1.Pod
		for i := range 3 {
			pods = append(pods, simplePod("broker-"+strconv.Itoa(i), "500m", func(p *corev1.Pod) {
				p.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: partitionKey,
					WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}}
			}))
		}
		plan := solveAndCheck(&scheduling.Input{Pods: pods, NodePools: []*scheduling.NodePool{pool}})
		Expect(plan.NewNodeClaims).To(HaveLen(3), "%v", unschedulableReasons(plan))
		partitions := map[string]bool{}
		for _, nc := range plan.NewNodeClaims {
			values := nc.Requirements[partitionKey].Values()
			Expect(values).To(HaveLen(1), "each claim is pinned to one partition")
			partitions[values[0]] = true
		}
		Expect(partitions).To(HaveLen(3))
	})
})
