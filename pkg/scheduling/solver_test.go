package scheduling_test

import (
	"fmt"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"
	resourcehelper "k8s.io/component-helpers/resource"
	"k8s.io/utils/ptr"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/scheduling"
	"github.com/backstop-sh/backstop/test/plancheck"
)

// typeOf builds an instance type with a family label, offered as Spot in the
// given zones at a price that grows with its size.
func typeOf(name, family string, cpu int64, price float64, zones ...string) *scheduling.InstanceType {
	it := &scheduling.InstanceType{
		Name: name,
		Requirements: scheduling.NewRequirements(
			scheduling.MustRequirement(corev1.LabelInstanceTypeStable, v1.OpIn, name),
			scheduling.MustRequirement("example.com/family", v1.OpIn, family),
			scheduling.MustRequirement(corev1.LabelArchStable, v1.OpIn, "amd64"),
		),
		Capacity: scheduling.Resources{CPU: cpu * 1000, Memory: cpu * 4 << 30, Pods: 110},
	}
	for _, z := range zones {
		it.Offerings = append(it.Offerings, scheduling.Offering{Zone: z, CapacityType: v1.CapacityTypeSpot, Price: price, Available: true})
	}
	return it
}

func simplePod(name, cpu string, mutate ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: k8stypes.UID("uid-" + name), Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)},
		}}}},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

func withHostPort(port int32) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: port, HostPort: port, Protocol: corev1.ProtocolTCP}}
	}
}

func solveAndCheck(in *scheduling.Input) *scheduling.Plan {
	plan := scheduling.Solve(in)
	Expect(plancheck.Check(in, plan)).To(BeEmpty(), "the independent checker rejects the plan")
	return plan
}

func unschedulableReasons(plan *scheduling.Plan) []string {
	var out []string
	for _, u := range plan.Unschedulable {
		out = append(out, u.Pod.Name+": "+u.Message(plan.PoolOrder))
	}
	return out
}

var _ = Describe("the solver", func() {
	zonesABC := []string{"z-a", "z-b", "z-c"}

	It("puts at most as many NodeClaims in a capacity reservation as it has room for, each pinned to it, the rest off reserved capacity", func() {
		reservedType := func() *scheduling.InstanceType {
			it := typeOf("m.large", "m", 2, 0.1, zonesABC...)
			it.Offerings = append(it.Offerings, scheduling.Offering{Zone: "z-b", CapacityType: v1.CapacityTypeReserved, Price: 0.2 / 1e7,
				Available: true, ReservationID: "cr-1", ReservationCapacity: 2})
			return it
		}
		pods := func(n int) []*corev1.Pod {
			var out []*corev1.Pod
			for i := range n {
				out = append(out, simplePod(fmt.Sprintf("p%d", i), "1500m"))
			}
			return out
		}
		catalog := []*scheduling.InstanceType{reservedType(), typeOf("c.large", "c", 2, 0.09, zonesABC...)}
		plan := solveAndCheck(&scheduling.Input{Pods: pods(4), NodePools: []*scheduling.NodePool{{Name: "pool", Weight: 1, InstanceTypes: catalog}}})
		Expect(plan.NewNodeClaims).To(HaveLen(4))
		reserved := 0
		for _, nc := range plan.NewNodeClaims {
			if nc.Requirements[v1.CapacityTypeLabelKey].Has(v1.CapacityTypeReserved) {
				reserved++
				Expect(nc.Requirements[v1.CapacityTypeLabelKey].Values()).To(Equal([]string{v1.CapacityTypeReserved}))
				Expect(nc.Requirements[scheduling.ReservationIDLabelKey].Values()).To(Equal([]string{"cr-1"}))
				Expect(nc.Requirements[corev1.LabelTopologyZone].Values()).To(Equal([]string{"z-b"}))
				Expect(nc.InstanceTypes).To(HaveLen(1))
				Expect(nc.Labels).To(HaveKeyWithValue(v1.CapacityTypeLabelKey, v1.CapacityTypeReserved))
			} else {
				Expect(nc.Requirements).NotTo(HaveKey(scheduling.ReservationIDLabelKey))
			}
		}
		Expect(reserved).To(Equal(2), "the reservation holds two")

		// One NodeClaim already put in it and not launched yet: room for one more.
		plan = solveAndCheck(&scheduling.Input{Pods: pods(4), NodePools: []*scheduling.NodePool{{Name: "pool", Weight: 1, InstanceTypes: catalog}},
			ReservedInFlight: map[string]int{"cr-1": 1}})
		reserved = 0
		for _, nc := range plan.NewNodeClaims {
			if nc.Requirements[v1.CapacityTypeLabelKey].Has(v1.CapacityTypeReserved) {
				reserved++
			}
		}
		Expect(reserved).To(Equal(1), "one in flight")

		// A pool of reservations only, tried first: what it has no room for
		// goes on to the next pool in the same plan.
		only := scheduling.NewRequirements(scheduling.MustRequirement(v1.CapacityTypeLabelKey, v1.OpIn, v1.CapacityTypeReserved))
		spot := scheduling.NewRequirements(scheduling.MustRequirement(v1.CapacityTypeLabelKey, v1.OpIn, v1.CapacityTypeSpot))
		plan = solveAndCheck(&scheduling.Input{Pods: pods(3), NodePools: []*scheduling.NodePool{
			{Name: "reserved", Weight: 100, InstanceTypes: catalog, Requirements: only},
			{Name: "spot", Weight: 10, InstanceTypes: catalog, Requirements: spot}}})
		Expect(plan.Unschedulable).To(BeEmpty())
		var pools []string
		for _, nc := range plan.NewNodeClaims {
			pools = append(pools, nc.NodePool+"/"+strings.Join(nc.Requirements[v1.CapacityTypeLabelKey].Values(), ","))
		}
		Expect(pools).To(ConsistOf("reserved/reserved", "reserved/reserved", "spot/spot"))
		plan = solveAndCheck(&scheduling.Input{Pods: pods(3), ReservedInFlight: map[string]int{"cr-1": 1}, NodePools: []*scheduling.NodePool{
			{Name: "reserved", Weight: 100, InstanceTypes: catalog, Requirements: only},
			{Name: "spot", Weight: 10, InstanceTypes: catalog, Requirements: spot}}})
		Expect(plan.Unschedulable).To(BeEmpty())
		pools = nil
		for _, nc := range plan.NewNodeClaims {
			pools = append(pools, nc.NodePool)
		}
		Expect(pools).To(ConsistOf("reserved", "spot", "spot"), "the reservations' pool keeps room for the one in flight")
		plan = solveAndCheck(&scheduling.Input{Pods: pods(3), NodePools: []*scheduling.NodePool{{Name: "reserved", Weight: 100, InstanceTypes: catalog, Requirements: only}}})
		Expect(plan.NewNodeClaims).To(HaveLen(2))
		Expect(unschedulableReasons(plan)).To(ConsistOf(ContainSubstring("every capacity reservation the pool allows is full")))
	})

	It("tries NodePools by weight, not by name", func() {
		catalog := []*scheduling.InstanceType{typeOf("m.large", "m", 2, 0.1, zonesABC...)}
		for _, weights := range [][2]int32{{10, 100}, {100, 10}} {
			in := &scheduling.Input{
				Pods: []*corev1.Pod{simplePod("p", "1")},
				NodePools: []*scheduling.NodePool{
					{Name: "a-pool", Weight: weights[0], InstanceTypes: catalog},
					{Name: "b-pool", Weight: weights[1], InstanceTypes: catalog},
				},
			}
			plan := solveAndCheck(in)
			Expect(plan.NewNodeClaims).To(HaveLen(1))
			want := "a-pool"
			if weights[1] > weights[0] {
				want = "b-pool"
			}
			Expect(plan.NewNodeClaims[0].NodePool).To(Equal(want), "weights %v", weights)
			Expect(plan.PoolOrder[0]).To(Equal(want))
		}
	})

	It("keeps minValues spanned after the options are cut to the cap", func() {
		// Seventy cheap types of family m, then one each of families c and r,
		// dearer: the 60 cheapest options alone would span one family.
		var catalog []*scheduling.InstanceType
		for i := range 70 {
			catalog = append(catalog, typeOf(fmt.Sprintf("m%d.large", i), "m", 2, 0.10+float64(i)/1000, zonesABC...))
		}
		catalog = append(catalog, typeOf("c.large", "c", 2, 0.5, zonesABC...), typeOf("r.large", "r", 2, 0.6, zonesABC...))
		family := scheduling.MustRequirement("example.com/family", v1.OpIn, "m", "c", "r")
		family.MinValues = ptr.To(3)
		in := &scheduling.Input{
			Pods:      []*corev1.Pod{simplePod("p", "1")},
			NodePools: []*scheduling.NodePool{{Name: "pool", Weight: 1, InstanceTypes: catalog, Requirements: scheduling.NewRequirements(family)}},
		}
		plan := solveAndCheck(in)
		Expect(plan.NewNodeClaims).To(HaveLen(1))
		options := plan.NewNodeClaims[0].InstanceTypes
		Expect(options).To(HaveLen(scheduling.DefaultMaxInstanceTypes))
		families := map[string]bool{}
		for _, it := range options {
			families[it.Requirements["example.com/family"].Any()] = true
		}
		Expect(families).To(HaveLen(3), "minValues 3 of the family must hold on the options the NodeClaim leaves with")
		Expect(options[0].Name).To(Equal("m0.large"), "still cheapest first")
	})

	It("refuses a pool whose options cannot span minValues", func() {
		catalog := []*scheduling.InstanceType{typeOf("m.large", "m", 2, 0.1, zonesABC...), typeOf("c.large", "c", 2, 0.2, zonesABC...)}
		family := scheduling.MustRequirement("example.com/family", v1.OpIn, "m", "c", "r")
		family.MinValues = ptr.To(3)
		plan := solveAndCheck(&scheduling.Input{
			Pods:      []*corev1.Pod{simplePod("p", "1")},
			NodePools: []*scheduling.NodePool{{Name: "pool", Weight: 1, InstanceTypes: catalog, Requirements: scheduling.NewRequirements(family)}},
		})
		Expect(plan.NewNodeClaims).To(BeEmpty())
		Expect(unschedulableReasons(plan)).To(ConsistOf(ContainSubstring("minValues 3 of example.com/family not met")))
	})

	It("counts a DaemonSet's host port on every node it plans, so a pod needing that port gets no node and a reason", func() {
		catalog := []*scheduling.InstanceType{typeOf("m.large", "m", 2, 0.1, zonesABC...)}
		ds := simplePod("agent", "100m", withHostPort(9100))
		in := &scheduling.Input{
			Pods:          []*corev1.Pod{simplePod("exporter", "1", withHostPort(9100)), simplePod("web", "1", withHostPort(8080))},
			NodePools:     []*scheduling.NodePool{{Name: "pool", Weight: 1, InstanceTypes: catalog}},
			DaemonSetPods: []*corev1.Pod{ds},
		}
		plan := solveAndCheck(in)
		Expect(plan.NewNodeClaims).To(HaveLen(1))
		Expect(plan.NewNodeClaims[0].Pods).To(ConsistOf(HaveField("Name", "web")))
		Expect(unschedulableReasons(plan)).To(ConsistOf("exporter: pool: a DaemonSet pod takes the pod's host port on every node the pool can make"))
	})

	It("counts a DaemonSet's host port only on instance types it runs on", func() {
		amd := typeOf("m.large", "m", 2, 0.1, zonesABC...)
		arm := typeOf("m6g.large", "m", 2, 0.2, zonesABC...)
		arm.Requirements[corev1.LabelArchStable] = scheduling.MustRequirement(corev1.LabelArchStable, v1.OpIn, "arm64")
		ds := simplePod("agent", "100m", withHostPort(9100), func(p *corev1.Pod) {
			p.Spec.NodeSelector = map[string]string{corev1.LabelArchStable: "amd64"}
		})
		in := &scheduling.Input{
			Pods:          []*corev1.Pod{simplePod("exporter", "1", withHostPort(9100))},
			NodePools:     []*scheduling.NodePool{{Name: "pool", Weight: 1, InstanceTypes: []*scheduling.InstanceType{amd, arm}}},
			DaemonSetPods: []*corev1.Pod{ds},
		}
		plan := solveAndCheck(in)
		Expect(plan.NewNodeClaims).To(HaveLen(1))
		Expect(plan.NewNodeClaims[0].InstanceTypes).To(ConsistOf(HaveField("Name", "m6g.large")))
	})

	It("counts only the spread domains the pod's node selector can reach (nodeAffinityPolicy Honor), as kube-scheduler does", func() {
		catalog := []*scheduling.InstanceType{typeOf("m.large", "m", 4, 0.1, zonesABC...)}
		spread := func(p *corev1.Pod) {
			p.Spec.NodeSelector = map[string]string{"team": "a"}
			p.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{
				MaxSkew: 1, TopologyKey: corev1.LabelTopologyZone, WhenUnsatisfiable: corev1.DoNotSchedule,
				LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			}}
		}
		var pods []*corev1.Pod
		for i := range 5 {
			pods = append(pods, simplePod(fmt.Sprintf("p%d", i), "1", spread))
		}
		in := &scheduling.Input{
			Pods: pods,
			NodePools: []*scheduling.NodePool{
				{Name: "team-a", Weight: 10, Labels: map[string]string{"team": "a"}, InstanceTypes: catalog,
					Requirements: scheduling.NewRequirements(scheduling.MustRequirement(corev1.LabelTopologyZone, v1.OpIn, "z-a", "z-b"))},
				{Name: "team-b", Weight: 10, Labels: map[string]string{"team": "b"}, InstanceTypes: catalog},
			},
		}
		plan := solveAndCheck(in)
		Expect(plan.Unschedulable).To(BeEmpty(), "z-c is only reachable through team-b, which the pods cannot use: it is no domain of theirs")
		perZone := map[string]int{}
		for _, c := range plan.NewNodeClaims {
			Expect(c.NodePool).To(Equal("team-a"))
			perZone[c.Requirements[corev1.LabelTopologyZone].Any()] += len(c.Pods)
		}
		Expect(perZone).To(SatisfyAny(Equal(map[string]int{"z-a": 3, "z-b": 2}), Equal(map[string]int{"z-a": 2, "z-b": 3})))
	})

	It("places a pod with zone affinity to a pod that comes later in the same batch", func() {
		catalog := []*scheduling.InstanceType{typeOf("m.large", "m", 2, 0.1, zonesABC...), typeOf("m.xlarge", "m", 4, 0.2, zonesABC...)}
		// The follower is larger, so it is placed first, before the db it needs.
		follower := simplePod("follower", "3", func(p *corev1.Pod) {
			p.Labels = map[string]string{"app": "cache"}
			p.Spec.Affinity = &corev1.Affinity{PodAffinity: &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
				LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}, TopologyKey: corev1.LabelTopologyZone,
			}}}}
		})
		db := simplePod("db", "1", func(p *corev1.Pod) { p.Labels = map[string]string{"app": "db"} })
		in := &scheduling.Input{
			Pods:      []*corev1.Pod{follower, db},
			NodePools: []*scheduling.NodePool{{Name: "pool", Weight: 1, InstanceTypes: catalog}},
		}
		plan := solveAndCheck(in)
		Expect(plan.Unschedulable).To(BeEmpty(), "%v", unschedulableReasons(plan))
		zoneOf := map[string]string{}
		for _, c := range plan.NewNodeClaims {
			for _, p := range c.Pods {
				zoneOf[p.Name] = c.Requirements[corev1.LabelTopologyZone].Any()
			}
		}
		Expect(zoneOf["follower"]).To(Equal(zoneOf["db"]))
		Expect(zoneOf["db"]).NotTo(BeEmpty())
	})

	It("prefers pools and nodes without a PreferNoSchedule taint the pod does not tolerate, among equals", func() {
		catalog := []*scheduling.InstanceType{typeOf("m.large", "m", 2, 0.1, zonesABC...)}
		soft := []corev1.Taint{{Key: "spare", Effect: corev1.TaintEffectPreferNoSchedule}}
		pools := []*scheduling.NodePool{
			{Name: "a-soft", Weight: 10, Taints: soft, InstanceTypes: catalog},
			{Name: "b-plain", Weight: 10, InstanceTypes: catalog},
		}
		plan := solveAndCheck(&scheduling.Input{Pods: []*corev1.Pod{simplePod("p", "1")}, NodePools: pools})
		Expect(plan.NewNodeClaims).To(HaveLen(1))
		Expect(plan.NewNodeClaims[0].NodePool).To(Equal("b-plain"))

		tolerant := simplePod("t", "1", func(p *corev1.Pod) {
			p.Spec.Tolerations = []corev1.Toleration{{Key: "spare", Operator: corev1.TolerationOpExists}}
		})
		plan = solveAndCheck(&scheduling.Input{Pods: []*corev1.Pod{tolerant}, NodePools: pools})
		Expect(plan.NewNodeClaims[0].NodePool).To(Equal("a-soft"), "a pod that tolerates the taint keeps the name order")

		higher := []*scheduling.NodePool{{Name: "soft-heavy", Weight: 50, Taints: soft, InstanceTypes: catalog}, pools[1]}
		plan = solveAndCheck(&scheduling.Input{Pods: []*corev1.Pod{simplePod("p", "1")}, NodePools: higher})
		Expect(plan.NewNodeClaims[0].NodePool).To(Equal("soft-heavy"), "weight still comes first: the taint only orders equals")

		nodes := []*scheduling.ExistingNode{
			{Name: "n1-soft", Taints: soft, Allocatable: scheduling.Resources{CPU: 4000, Memory: 8 << 30, Pods: 10}},
			{Name: "n2-plain", Allocatable: scheduling.Resources{CPU: 4000, Memory: 8 << 30, Pods: 10}},
		}
		plan = solveAndCheck(&scheduling.Input{Pods: []*corev1.Pod{simplePod("p", "1")}, Nodes: nodes, NodePools: pools})
		Expect(plan.Existing).To(ConsistOf(HaveField("Node", "n2-plain")))
		plan = solveAndCheck(&scheduling.Input{Pods: []*corev1.Pod{simplePod("p", "1")}, Nodes: nodes[:1], NodePools: pools})
		Expect(plan.Existing).To(ConsistOf(HaveField("Node", "n1-soft")), "a soft taint never sends a pod to a new node")
	})
})

var _ = Describe("pod requests", func() {
	restartAlways := corev1.ContainerRestartPolicyAlways
	container := func(cpu, mem string) corev1.Container {
		return corev1.Container{Name: "c" + cpu + mem, Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem),
		}}}
	}
	sidecar := func(cpu, mem string) corev1.Container {
		c := container(cpu, mem)
		c.Name = "sidecar" + cpu
		c.RestartPolicy = &restartAlways
		return c
	}
	DescribeTable("match Kubernetes' own arithmetic",
		func(spec corev1.PodSpec) {
			pod := &corev1.Pod{Spec: spec}
			want := resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{})
			got := scheduling.PodRequests(pod)
			Expect(got.CPU).To(Equal(want.Cpu().MilliValue()), "cpu")
			Expect(got.Memory).To(Equal(want.Memory().Value()), "memory")
			Expect(got.Pods).To(Equal(int64(1)))
		},
		Entry("containers are summed", corev1.PodSpec{Containers: []corev1.Container{container("1", "1Gi"), container("500m", "512Mi")}}),
		Entry("a larger init container sets the peak", corev1.PodSpec{
			InitContainers: []corev1.Container{container("3", "100Mi")}, Containers: []corev1.Container{container("1", "1Gi")}}),
		Entry("sidecars run beside the containers and the init containers after them", corev1.PodSpec{
			InitContainers: []corev1.Container{sidecar("1", "256Mi"), container("2", "2Gi"), sidecar("500m", "128Mi")},
			Containers:     []corev1.Container{container("1", "1Gi")}}),
		Entry("overhead is added", corev1.PodSpec{Containers: []corev1.Container{container("1", "1Gi")},
			Overhead: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("120Mi")}}),
		Entry("pod-level requests replace the containers' sum", corev1.PodSpec{Containers: []corev1.Container{container("1", "1Gi"), container("1", "1Gi")},
			Resources: &corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("3"), corev1.ResourceMemory: resource.MustParse("5Gi")}}}),
	)

	It("decide which instance type a pod needs", func() {
		catalog := []*scheduling.InstanceType{typeOf("m.large", "m", 2, 0.1, "z-a"), typeOf("m.xlarge", "m", 4, 0.2, "z-a")}
		// One CPU of containers, but a sidecar beside them and a 2.5-CPU init step after it.
		pod := simplePod("p", "1", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{sidecar("1", "64Mi"), container("2500m", "64Mi")}
		})
		plan := solveAndCheck(&scheduling.Input{Pods: []*corev1.Pod{pod}, NodePools: []*scheduling.NodePool{{Name: "pool", Weight: 1, InstanceTypes: catalog}}})
		Expect(plan.NewNodeClaims).To(HaveLen(1))
		Expect(plan.NewNodeClaims[0].InstanceTypes).To(ConsistOf(HaveField("Name", "m.xlarge")), "3.5 CPUs at the peak do not fit 2")
	})

	Describe("filling a static NodePool", func() {
		zonesABC := []string{"z-a", "z-b", "z-c"}
		catalog := func() []*scheduling.InstanceType {
			return []*scheduling.InstanceType{typeOf("m.xlarge", "m", 4, 0.2, zonesABC...), typeOf("m.large", "m", 2, 0.1, zonesABC...), typeOf("c.large", "c", 2, 0.09, zonesABC...)}
		}

		It("opens the NodeClaims asked for without pods, cheapest types first, with the DaemonSet overhead as requests", func() {
			in := &scheduling.Input{
				NodePools:     []*scheduling.NodePool{{Name: "static", InstanceTypes: catalog()}, {Name: "other", Weight: 10, InstanceTypes: catalog()}},
				DaemonSetPods: []*corev1.Pod{simplePod("agent", "250m")},
				Fill:          map[string]int{"static": 3},
			}
			plan := solveAndCheck(in)
			Expect(plan.NewNodeClaims).To(HaveLen(3))
			for _, nc := range plan.NewNodeClaims {
				Expect(nc.NodePool).To(Equal("static"))
				Expect(nc.Pods).To(BeEmpty())
				Expect(nc.InstanceTypes[0].Name).To(Equal("c.large"))
				Expect(nc.Requirements[corev1.LabelInstanceTypeStable].Values()).To(ConsistOf("c.large", "m.large", "m.xlarge"))
				Expect(nc.Requests.CPU).To(Equal(int64(250)), "the DaemonSet pod's request")
			}
			Expect(plan.Unfilled).To(BeEmpty())
		})

		It("keeps to the pool's requirements, its limits.nodes and the room of a reservation-only pool, and says why it stopped", func() {
			pool := &scheduling.NodePool{Name: "static", InstanceTypes: catalog(), Nodes: 1, Limits: corev1.ResourceList{"nodes": resource.MustParse("3")},
				Requirements: scheduling.NewRequirements(scheduling.MustRequirement("example.com/family", v1.OpIn, "m"))}
			plan := solveAndCheck(&scheduling.Input{NodePools: []*scheduling.NodePool{pool}, Fill: map[string]int{"static": 5}})
			Expect(plan.NewNodeClaims).To(HaveLen(2), "one node exists, the limit is three")
			Expect(plan.NewNodeClaims[0].Requirements[corev1.LabelInstanceTypeStable].Values()).To(ConsistOf("m.large", "m.xlarge"))
			Expect(plan.Unfilled).To(HaveKeyWithValue("static", "the pool's limits.nodes (3) is reached"))

			reserved := typeOf("m.large", "m", 2, 0.1, zonesABC...)
			reserved.Offerings = append(reserved.Offerings, scheduling.Offering{Zone: "z-b", CapacityType: v1.CapacityTypeReserved, Price: 1e-8,
				Available: true, ReservationID: "cr-1", ReservationCapacity: 2})
			only := &scheduling.NodePool{Name: "static", InstanceTypes: []*scheduling.InstanceType{reserved},
				Requirements: scheduling.NewRequirements(scheduling.MustRequirement(v1.CapacityTypeLabelKey, v1.OpIn, v1.CapacityTypeReserved))}
			plan = solveAndCheck(&scheduling.Input{NodePools: []*scheduling.NodePool{only}, Fill: map[string]int{"static": 3}, ReservedInFlight: map[string]int{"cr-1": 1}})
			Expect(plan.NewNodeClaims).To(HaveLen(1), "room for two, one already on its way")
			Expect(plan.NewNodeClaims[0].Requirements[scheduling.ReservationIDLabelKey].Values()).To(Equal([]string{"cr-1"}))
			Expect(plan.Unfilled).To(HaveKeyWithValue("static", "every capacity reservation the pool allows is full"))

			notReady := &scheduling.NodePool{Name: "static", InstanceTypes: catalog(), NotReady: "the EC2NodeClass is not ready"}
			plan = solveAndCheck(&scheduling.Input{NodePools: []*scheduling.NodePool{notReady}, Fill: map[string]int{"static": 1}})
			Expect(plan.NewNodeClaims).To(BeEmpty())
			Expect(plan.Unfilled).To(HaveKeyWithValue("static", "the EC2NodeClass is not ready"))
		})
	})
})
