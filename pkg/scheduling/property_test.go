package scheduling_test

import (
	"fmt"
	"math/rand"
	"os"
	"strconv"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/scheduling"
	"github.com/backstop-sh/backstop/test/plancheck"
)

var zones = []string{"z1", "z2", "z3"}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.Intn(len(xs))] }

func chance(r *rand.Rand, p float64) bool { return r.Float64() < p }

func subset(r *rand.Rand, xs []string) []string {
	var out []string
	for _, x := range xs {
		if chance(r, 0.6) {
			out = append(out, x)
		}
	}
	if len(out) == 0 {
		out = append(out, pick(r, xs))
	}
	return out
}

func randomCatalog(r *rand.Rand) []*scheduling.InstanceType {
	var out []*scheduling.InstanceType
	for i := 0; i < 12; i++ {
		cpu := pick(r, []int64{1, 2, 4, 8, 16})
		ratio := pick(r, []int64{2, 4, 8})
		arch := pick(r, []string{"amd64", "arm64"})
		it := &scheduling.InstanceType{
			Name: fmt.Sprintf("t%d.%dx%d", i, cpu, ratio),
			Requirements: scheduling.NewRequirements(
				scheduling.MustRequirement(corev1.LabelInstanceTypeStable, v1.OpIn, fmt.Sprintf("t%d.%dx%d", i, cpu, ratio)),
				scheduling.MustRequirement(corev1.LabelArchStable, v1.OpIn, arch),
				scheduling.MustRequirement(corev1.LabelOSStable, v1.OpIn, "linux"),
				scheduling.MustRequirement("example.com/family", v1.OpIn, fmt.Sprintf("f%d", i%4)),
			),
			Capacity: scheduling.Resources{CPU: cpu * 1000, Memory: cpu * ratio << 30, Pods: 8 * cpu},
			Overhead: scheduling.Resources{CPU: 100, Memory: 200 << 20},
		}
		for _, z := range subset(r, zones) {
			for _, ct := range subset(r, []string{"spot", "on-demand"}) {
				price := float64(cpu*ratio) * (0.02 + r.Float64()*0.02)
				if ct == "spot" {
					price *= 0.4
				}
				it.Offerings = append(it.Offerings, scheduling.Offering{Zone: z, CapacityType: ct, Price: price, Available: chance(r, 0.9)})
			}
		}
		out = append(out, it)
	}
	return out
}

func randomPools(r *rand.Rand, catalog []*scheduling.InstanceType) []*scheduling.NodePool {
	var out []*scheduling.NodePool
	for i := 0; i < 1+r.Intn(3); i++ {
		p := &scheduling.NodePool{Name: fmt.Sprintf("pool-%d", i), Weight: int32(r.Intn(100) + 1), Requirements: scheduling.Requirements{}, InstanceTypes: catalog}
		if chance(r, 0.5) {
			p.Requirements.Add(scheduling.MustRequirement(v1.CapacityTypeLabelKey, v1.OpIn, pick(r, []string{"spot", "on-demand"})))
		}
		if chance(r, 0.3) {
			p.Requirements.Add(scheduling.MustRequirement(corev1.LabelTopologyZone, v1.OpIn, subset(r, zones)...))
		}
		if chance(r, 0.2) {
			p.Requirements.Add(scheduling.MustRequirement(corev1.LabelArchStable, v1.OpIn, pick(r, []string{"amd64", "arm64"})))
		}
		if chance(r, 0.2) {
			p.Taints = []corev1.Taint{{Key: "dedicated", Value: "batch", Effect: corev1.TaintEffectNoSchedule}}
		}
		if chance(r, 0.3) {
			p.Labels = map[string]string{"team": pick(r, []string{"red", "blue"})}
		}
		if chance(r, 0.25) {
			p.Limits = corev1.ResourceList{corev1.ResourceCPU: *resource.NewQuantity(int64(8+r.Intn(40)), resource.DecimalSI)}
		}
		if chance(r, 0.1) {
			p.Limits = corev1.ResourceList{"nodes": *resource.NewQuantity(int64(1+r.Intn(4)), resource.DecimalSI)}
		}
		out = append(out, p)
	}
	return out
}

func randomPod(r *rand.Rand, i int) *corev1.Pod {
	app := pick(r, []string{"a", "b", "c"})
	ns := "default"
	if chance(r, 0.15) {
		ns = "other"
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%d", i), Namespace: ns, Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceCPU:    *resource.NewMilliQuantity(int64(pick(r, []int{100, 250, 500, 1000, 2000, 3500})), resource.DecimalSI),
			corev1.ResourceMemory: *resource.NewQuantity(int64(pick(r, []int{128, 512, 1024, 4096, 9000}))<<20, resource.BinarySI),
		}}}}},
	}
	selector := &metav1.LabelSelector{MatchLabels: map[string]string{"app": pick(r, []string{"a", "b", "c"})}}
	aff := &corev1.Affinity{}
	if chance(r, 0.1) {
		p.Spec.NodeSelector = map[string]string{corev1.LabelTopologyZone: pick(r, zones)}
	}
	if chance(r, 0.1) {
		p.Spec.NodeSelector = map[string]string{corev1.LabelArchStable: pick(r, []string{"amd64", "arm64"})}
	}
	if chance(r, 0.05) {
		p.Spec.NodeSelector = map[string]string{"team": pick(r, []string{"red", "blue"})}
	}
	if chance(r, 0.1) {
		aff.NodeAffinity = &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{
			{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelTopologyZone, Operator: corev1.NodeSelectorOpIn, Values: []string{pick(r, zones)}}}},
			{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: v1.CapacityTypeLabelKey, Operator: corev1.NodeSelectorOpIn, Values: []string{"on-demand"}}}},
		}}}
	}
	if chance(r, 0.1) {
		if aff.NodeAffinity == nil {
			aff.NodeAffinity = &corev1.NodeAffinity{}
		}
		aff.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution = []corev1.PreferredSchedulingTerm{{Weight: int32(1 + r.Intn(100)),
			Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelTopologyZone, Operator: corev1.NodeSelectorOpIn, Values: []string{pick(r, zones)}}}}}}
	}
	if chance(r, 0.3) {
		p.Spec.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpExists}}
	}
	if chance(r, 0.15) {
		tsc := corev1.TopologySpreadConstraint{
			MaxSkew: int32(1 + r.Intn(2)), TopologyKey: corev1.LabelTopologyZone, WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: selector,
		}
		if chance(r, 0.3) {
			tsc.NodeTaintsPolicy = ptr.To(corev1.NodeInclusionPolicyHonor)
		}
		if chance(r, 0.2) {
			tsc.NodeAffinityPolicy = ptr.To(corev1.NodeInclusionPolicyIgnore)
		}
		p.Spec.TopologySpreadConstraints = append(p.Spec.TopologySpreadConstraints, tsc)
	}
	if chance(r, 0.1) {
		p.Spec.TopologySpreadConstraints = append(p.Spec.TopologySpreadConstraints, corev1.TopologySpreadConstraint{
			MaxSkew: 1, TopologyKey: corev1.LabelHostname, WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: selector,
			MinDomains: ptr.To[int32](2),
		})
	}
	if chance(r, 0.05) {
		p.Spec.TopologySpreadConstraints = append(p.Spec.TopologySpreadConstraints, corev1.TopologySpreadConstraint{
			MaxSkew: 1, TopologyKey: corev1.LabelTopologyZone, WhenUnsatisfiable: corev1.ScheduleAnyway, LabelSelector: selector,
		})
	}
	term := func(key string) corev1.PodAffinityTerm {
		t := corev1.PodAffinityTerm{LabelSelector: selector, TopologyKey: key}
		if chance(r, 0.2) {
			t.NamespaceSelector = &metav1.LabelSelector{}
		}
		return t
	}
	if chance(r, 0.1) {
		aff.PodAntiAffinity = &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{term(pick(r, []string{corev1.LabelHostname, corev1.LabelHostname, corev1.LabelTopologyZone}))}}
	}
	if chance(r, 0.08) {
		aff.PodAffinity = &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{term(pick(r, []string{corev1.LabelHostname, corev1.LabelTopologyZone}))}}
	}
	if chance(r, 0.08) {
		if aff.PodAntiAffinity == nil {
			aff.PodAntiAffinity = &corev1.PodAntiAffinity{}
		}
		aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution = []corev1.WeightedPodAffinityTerm{{Weight: int32(1 + r.Intn(100)), PodAffinityTerm: term(corev1.LabelHostname)}}
	}
	if aff.NodeAffinity != nil || aff.PodAffinity != nil || aff.PodAntiAffinity != nil {
		p.Spec.Affinity = aff
	}
	if chance(r, 0.05) {
		p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80, HostPort: pick(r, []int32{8080, 8080, 9100}), Protocol: corev1.ProtocolTCP}}
	}
	return p
}

func randomExistingNodes(r *rand.Rand, catalog []*scheduling.InstanceType) []*scheduling.ExistingNode {
	var out []*scheduling.ExistingNode
	for i := 0; i < r.Intn(4); i++ {
		it := pick(r, catalog)
		name := fmt.Sprintf("existing-%d", i)
		n := &scheduling.ExistingNode{
			Name: name,
			Labels: map[string]string{
				corev1.LabelHostname: name, corev1.LabelTopologyZone: pick(r, zones), corev1.LabelInstanceTypeStable: it.Name,
				corev1.LabelArchStable: it.Requirements[corev1.LabelArchStable].Any(), v1.CapacityTypeLabelKey: "on-demand",
			},
			Allocatable: it.Allocatable(),
		}
		for j := 0; j < r.Intn(3); j++ {
			pod := randomPod(r, 1000+i*10+j)
			pod.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}
			n.Pods = append(n.Pods, pod)
		}
		out = append(out, n)
	}
	return out
}

func randomDaemonSets(r *rand.Rand) []*corev1.Pod {
	var out []*corev1.Pod
	for i := 0; i < r.Intn(3); i++ {
		ds := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ds-%d", i), Namespace: "kube-system"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("256Mi"),
			}}}}}}
		if chance(r, 0.5) {
			ds.Spec.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
		}
		if chance(r, 0.3) {
			ds.Spec.NodeSelector = map[string]string{corev1.LabelArchStable: "amd64"}
		}
		if chance(r, 0.3) {
			// A node exporter's port, which some random pods ask for too.
			ds.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 9100, HostPort: 9100, Protocol: corev1.ProtocolTCP}}
		}
		out = append(out, ds)
	}
	return out
}

func randomInput(seed int64) *scheduling.Input {
	r := rand.New(rand.NewSource(seed))
	catalog := randomCatalog(r)
	in := &scheduling.Input{
		NodePools:       randomPools(r, catalog),
		Nodes:           randomExistingNodes(r, catalog),
		DaemonSetPods:   randomDaemonSets(r),
		NamespaceLabels: map[string]map[string]string{"default": {"env": "prod"}, "other": {"env": "dev"}},
	}
	if chance(r, 0.3) {
		in.PreferencePolicy = scheduling.PreferencesIgnore
	}
	for i := 0; i < 1+r.Intn(40); i++ {
		in.Pods = append(in.Pods, randomPod(r, i))
	}
	return in
}

var _ = Describe("random workloads", func() {
	It("always yield plans the independent checker accepts, and a reason for every pod left out", func() {
		placed, left := 0, 0
		for seed := int64(1); seed <= propertySeeds; seed++ {
			in := randomInput(seed)
			plan := scheduling.Solve(in)
			errs := plancheck.Check(in, plan)
			Expect(errs).To(BeEmpty(), "seed %d:\n%s", seed, plancheck.Summary(errs))
			for _, u := range plan.Unschedulable {
				Expect(u.Message(plan.PoolOrder)).NotTo(BeEmpty(), "seed %d: pod %s left out without a reason", seed, u.Pod.Name)
			}
			placed += len(plan.Steps)
			left += len(plan.Unschedulable)
		}
		// The generator must exercise both outcomes, or the property says little.
		Expect(placed).To(BeNumerically(">", 1000))
		Expect(left).To(BeNumerically(">", 20))
	})
})

// propertySeeds is how many random workloads the property test solves; raise it
// with PROPERTY_SEEDS for a longer search.
var propertySeeds = func() int64 {
	if n, err := strconv.ParseInt(os.Getenv("PROPERTY_SEEDS"), 10, 64); err == nil && n > 0 {
		return n
	}
	return 400
}()
