package scheduling_test

import (
	"strconv"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

// zoneIDs name the three zones as AWS's zone ids do: not in their order.
var zoneIDs = map[string]string{"zone-a": "use1-az4", "zone-b": "use1-az1", "zone-c": "use1-az2"}

// withZoneIDs gives every offering of the types its zone's id.
func withZoneIDs(types ...*scheduling.InstanceType) []*scheduling.InstanceType {
	for _, it := range types {
		for i := range it.Offerings {
			it.Offerings[i].ZoneID = zoneIDs[it.Offerings[i].Zone]
		}
	}
	return types
}

func zoneOfClaim(nc *scheduling.NewNodeClaim) []string {
	return nc.Requirements[corev1.LabelTopologyZone].Values()
}

var _ = Describe("zone ids (topology.k8s.aws/zone-id)", func() {
	var types []*scheduling.InstanceType
	BeforeEach(func() {
		types = withZoneIDs(typeOf("m.large", "m", 2, 0.05, "zone-a", "zone-b", "zone-c"))
	})

	It("plans a pool that requires a zone id in that zone", func() {
		pool := &scheduling.NodePool{Name: "p", InstanceTypes: types, Requirements: scheduling.NewRequirements(
			scheduling.MustRequirement(scheduling.ZoneIDLabelKey, v1.OpIn, "use1-az1"))}
		plan := solveAndCheck(&scheduling.Input{Pods: []*corev1.Pod{simplePod("a", "1")}, NodePools: []*scheduling.NodePool{pool}})
		Expect(plan.NewNodeClaims).To(HaveLen(1))
		Expect(zoneOfClaim(plan.NewNodeClaims[0])).To(Equal([]string{"zone-b"}))
		Expect(plan.NewNodeClaims[0].Labels).To(HaveKeyWithValue(scheduling.ZoneIDLabelKey, "use1-az1"))
	})

	It("counts minValues on zone ids over the options' offerings, as on zones", func() {
		types = withZoneIDs(typeOf("c.large", "c", 2, 0.04, "zone-a"), typeOf("m.large", "m", 2, 0.05, "zone-a", "zone-b"))
		minZoneIDs := func(n int) *scheduling.NodePool {
			r := scheduling.MustRequirement(scheduling.ZoneIDLabelKey, v1.OpExists)
			r.MinValues = ptr.To(n)
			return &scheduling.NodePool{Name: "p", InstanceTypes: types, Requirements: scheduling.NewRequirements(r)}
		}
		plan := solveAndCheck(&scheduling.Input{Pods: []*corev1.Pod{simplePod("a", "1")}, NodePools: []*scheduling.NodePool{minZoneIDs(2)}})
		Expect(plan.NewNodeClaims).To(HaveLen(1), "%v", unschedulableReasons(plan))
		Expect(plan.NewNodeClaims[0].InstanceTypes).To(HaveLen(2), "c.large alone spans one zone id")
		Expect(plan.NewNodeClaims[0].Requirements[scheduling.ZoneIDLabelKey].MinValues).To(Equal(ptr.To(2)))

		plan = solveAndCheck(&scheduling.Input{Pods: []*corev1.Pod{simplePod("a", "1")}, NodePools: []*scheduling.NodePool{minZoneIDs(3)}})
		Expect(plan.NewNodeClaims).To(BeEmpty())
		Expect(unschedulableReasons(plan)).To(ConsistOf("a: p: minValues 3 of topology.k8s.aws/zone-id not met: only 2 values fit"))
	})

	It("plans a pod that selects a zone id in that zone, and one that selects an unknown id nowhere", func() {
		pool := &scheduling.NodePool{Name: "p", InstanceTypes: types}
		pod := simplePod("a", "1", func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{scheduling.ZoneIDLabelKey: "use1-az2"} })
		plan := solveAndCheck(&scheduling.Input{Pods: []*corev1.Pod{pod}, NodePools: []*scheduling.NodePool{pool}})
		Expect(plan.NewNodeClaims).To(HaveLen(1), "%v", unschedulableReasons(plan))
		Expect(zoneOfClaim(plan.NewNodeClaims[0])).To(Equal([]string{"zone-c"}))

		lost := simplePod("b", "1", func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{scheduling.ZoneIDLabelKey: "use1-az9"} })
		plan = solveAndCheck(&scheduling.Input{Pods: []*corev1.Pod{lost}, NodePools: []*scheduling.NodePool{pool}})
		Expect(plan.NewNodeClaims).To(BeEmpty())
		Expect(plan.Unschedulable).To(HaveLen(1))
	})

	It("keeps a pod that selects a zone id off a claim of this plan in another zone", func() {
		pool := &scheduling.NodePool{Name: "p", InstanceTypes: types}
		first := simplePod("a", "1", func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{corev1.LabelTopologyZone: "zone-a"} })
		second := simplePod("b", "500m", func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{scheduling.ZoneIDLabelKey: "use1-az1"} })
		plan := solveAndCheck(&scheduling.Input{Pods: []*corev1.Pod{first, second}, NodePools: []*scheduling.NodePool{pool}})
		Expect(plan.NewNodeClaims).To(HaveLen(2), "zone-a is use1-az4, not use1-az1")
	})

	It("spreads pods over zone ids, counting the nodes already there", func() {
		pool := &scheduling.NodePool{Name: "p", InstanceTypes: types}
		spread := func(p *corev1.Pod) {
			p.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: scheduling.ZoneIDLabelKey,
				WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}}
		}
		// Two of the app's pods already run in use1-az4 (zone-a).
		var there []*corev1.Pod
		for i := range 2 {
			p := simplePod("old-"+strconv.Itoa(i), "100m", spread)
			p.Spec.NodeName = "old"
			there = append(there, p)
		}
		old := &scheduling.ExistingNode{Name: "old", Labels: map[string]string{corev1.LabelHostname: "old", corev1.LabelTopologyZone: "zone-a",
			scheduling.ZoneIDLabelKey: "use1-az4", v1.NodePoolLabelKey: "p"}, Allocatable: scheduling.Resources{CPU: 200, Memory: 1 << 30, Pods: 10}, Pods: there}
		var pods []*corev1.Pod
		for i := range 4 {
			pods = append(pods, simplePod("new-"+strconv.Itoa(i), "1500m", spread))
		}
		plan := solveAndCheck(&scheduling.Input{Pods: pods, NodePools: []*scheduling.NodePool{pool}, Nodes: []*scheduling.ExistingNode{old}})
		Expect(plan.Unschedulable).To(BeEmpty(), unschedulableReasons(plan))
		perZone := map[string]int{}
		for _, nc := range plan.NewNodeClaims {
			Expect(zoneOfClaim(nc)).To(HaveLen(1), "each claim pinned to one zone")
			perZone[zoneOfClaim(nc)[0]] += len(nc.Pods)
		}
		// 2 already in az4: the four new go 2 to az1, 2 to az2, none to az4.
		Expect(perZone).To(Equal(map[string]int{"zone-b": 2, "zone-c": 2}))

		// With no node yet, the first three go one to each zone id.
		plan = solveAndCheck(&scheduling.Input{Pods: pods[:3], NodePools: []*scheduling.NodePool{pool}})
		Expect(plan.Unschedulable).To(BeEmpty(), "%v", unschedulableReasons(plan))
		perZone = map[string]int{}
		for _, nc := range plan.NewNodeClaims {
			Expect(zoneOfClaim(nc)).To(HaveLen(1), "each claim pinned to one zone")
			perZone[zoneOfClaim(nc)[0]] += len(nc.Pods)
		}
		Expect(perZone).To(Equal(map[string]int{"zone-a": 1, "zone-b": 1, "zone-c": 1}))

		// A pod held to use1-az4 whose spread counts every zone id the pool
		// can make (nodeAffinityPolicy Ignore) would put az4 two ahead of the
		// empty az1 and az2: it waits, as kube-scheduler would have it.
		ignore := corev1.NodeInclusionPolicyIgnore
		held := simplePod("held", "100m", spread, func(p *corev1.Pod) {
			p.Spec.NodeSelector = map[string]string{scheduling.ZoneIDLabelKey: "use1-az4"}
			p.Spec.TopologySpreadConstraints[0].NodeAffinityPolicy = &ignore
		})
		old.Allocatable.CPU = 2000
		plan = solveAndCheck(&scheduling.Input{Pods: []*corev1.Pod{held}, NodePools: []*scheduling.NodePool{pool}, Nodes: []*scheduling.ExistingNode{old}})
		Expect(plan.Existing).To(BeEmpty())
		Expect(plan.NewNodeClaims).To(BeEmpty())
		Expect(plan.Unschedulable).To(HaveLen(1))
	})

	It("places a pod with pod affinity on a zone id in the zone of the pod it follows", func() {
		pool := &scheduling.NodePool{Name: "p", InstanceTypes: types}
		db := simplePod("db", "100m", func(p *corev1.Pod) { p.Labels = map[string]string{"app": "db"}; p.Spec.NodeName = "old" })
		old := &scheduling.ExistingNode{Name: "old", Labels: map[string]string{corev1.LabelHostname: "old", corev1.LabelTopologyZone: "zone-c",
			scheduling.ZoneIDLabelKey: "use1-az2"}, Allocatable: scheduling.Resources{CPU: 200, Memory: 1 << 30, Pods: 10}, Pods: []*corev1.Pod{db}}
		near := simplePod("near", "1", func(p *corev1.Pod) {
			p.Spec.Affinity = &corev1.Affinity{PodAffinity: &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
				TopologyKey: scheduling.ZoneIDLabelKey, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}}}}}
		})
		plan := solveAndCheck(&scheduling.Input{Pods: []*corev1.Pod{near}, NodePools: []*scheduling.NodePool{pool}, Nodes: []*scheduling.ExistingNode{old}})
		Expect(plan.NewNodeClaims).To(HaveLen(1), "%v", unschedulableReasons(plan))
		Expect(zoneOfClaim(plan.NewNodeClaims[0])).To(Equal([]string{"zone-c"}))
	})
})
