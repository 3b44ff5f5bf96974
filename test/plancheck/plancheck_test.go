package plancheck_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/scheduling"
	"github.com/backstop-sh/backstop/test/plancheck"
)

func TestPlanCheck(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "plancheck")
}

func instanceType(name string, cpu, memGi int64, zones ...string) *scheduling.InstanceType {
	it := &scheduling.InstanceType{
		Name:         name,
		Requirements: scheduling.NewRequirements(scheduling.MustRequirement(corev1.LabelArchStable, v1.OpIn, "amd64")),
		Capacity:     scheduling.Resources{CPU: cpu * 1000, Memory: memGi << 30, Pods: 110},
	}
	for _, z := range zones {
		it.Offerings = append(it.Offerings, scheduling.Offering{Zone: z, CapacityType: "spot", Price: float64(cpu), Available: true})
	}
	return it
}

func pod(name string, cpu string, mutate ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)},
		}}}},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

func antiAffinity(p *corev1.Pod) {
	p.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
		LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, TopologyKey: corev1.LabelHostname,
	}}}}
}

func zoneSpread(p *corev1.Pod) {
	p.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{
		MaxSkew: 1, TopologyKey: corev1.LabelTopologyZone, WhenUnsatisfiable: corev1.DoNotSchedule,
		LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
	}}
}

func claim(reqs scheduling.Requirements, types []*scheduling.InstanceType, pods ...*corev1.Pod) *scheduling.NewNodeClaim {
	reqs = reqs.Intersect(scheduling.NewRequirements(scheduling.MustRequirement(v1.NodePoolLabelKey, v1.OpIn, "pool")))
	return &scheduling.NewNodeClaim{NodePool: "pool", Requirements: reqs, InstanceTypes: types, Pods: pods, Labels: reqs.Labels()}
}

func planOf(claims ...*scheduling.NewNodeClaim) *scheduling.Plan {
	p := &scheduling.Plan{NewNodeClaims: claims}
	for i, c := range claims {
		for _, pd := range c.Pods {
			p.Steps = append(p.Steps, scheduling.Step{Pod: pd, Claim: i})
		}
	}
	return p
}

var _ = Describe("the plan checker", func() {
	small := instanceType("small", 2, 4, "a")
	twoZones := instanceType("two-zones", 2, 4, "a", "b")
	pool := &scheduling.NodePool{Name: "pool", InstanceTypes: []*scheduling.InstanceType{small, twoZones}}
	zoneA := scheduling.NewRequirements(scheduling.MustRequirement(corev1.LabelTopologyZone, v1.OpIn, "a"))

	check := func(pods []*corev1.Pod, plan *scheduling.Plan, mutate ...func(*scheduling.Input)) []string {
		in := &scheduling.Input{Pods: pods, NodePools: []*scheduling.NodePool{pool}}
		for _, m := range mutate {
			m(in)
		}
		return plancheck.Check(in, plan)
	}

	It("accepts a valid plan", func() {
		a, b := pod("a", "500m"), pod("b", "500m")
		Expect(check([]*corev1.Pod{a, b}, planOf(claim(zoneA, []*scheduling.InstanceType{small}, a, b)))).To(BeEmpty())
	})

	It("rejects two anti-affine pods on one node", func() {
		a, b := pod("a", "500m", antiAffinity), pod("b", "500m", antiAffinity)
		Expect(check([]*corev1.Pod{a, b}, planOf(claim(zoneA, []*scheduling.InstanceType{small}, a, b)))).To(ContainElement(ContainSubstring("anti-affinity on kubernetes.io/hostname violated")))
	})

	It("rejects a node whose smallest option cannot hold its pods", func() {
		a, b := pod("a", "1500m"), pod("b", "1500m")
		Expect(check([]*corev1.Pod{a, b}, planOf(claim(zoneA, []*scheduling.InstanceType{small}, a, b)))).To(ContainElement(ContainSubstring("over-committed on cpu")))
	})

	It("rejects a pod whose node selector some resolution of the node misses", func() {
		a := pod("a", "500m", func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{corev1.LabelTopologyZone: "a"} })
		Expect(check([]*corev1.Pod{a}, planOf(claim(scheduling.Requirements{}, []*scheduling.InstanceType{twoZones}, a)))).To(ContainElement(ContainSubstring("node affinity does not match")))
	})

	It("rejects a zone-spread pod on a node whose zone is not decided", func() {
		a := pod("a", "500m", zoneSpread)
		Expect(check([]*corev1.Pod{a}, planOf(claim(scheduling.Requirements{}, []*scheduling.InstanceType{twoZones}, a)))).To(ContainElement(ContainSubstring("is not decided")))
	})

	It("rejects zone skew beyond maxSkew", func() {
		a, b := pod("a", "100m", zoneSpread), pod("b", "100m", zoneSpread)
		zoneB := scheduling.NewRequirements(scheduling.MustRequirement(corev1.LabelTopologyZone, v1.OpIn, "b"))
		// Both in zone a while zone b has a node with none: skew 2.
		plan := planOf(claim(zoneA, []*scheduling.InstanceType{small}, a, b), claim(zoneB, []*scheduling.InstanceType{twoZones}))
		Expect(check([]*corev1.Pod{a, b}, plan)).To(ContainElement(ContainSubstring("would reach skew 2 > 1")))
	})

	It("rejects an untolerated taint", func() {
		a := pod("a", "500m")
		c := claim(zoneA, []*scheduling.InstanceType{small}, a)
		c.Taints = []corev1.Taint{{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule}}
		Expect(check([]*corev1.Pod{a}, planOf(c))).To(ContainElement(ContainSubstring("taint dedicated=gpu:NoSchedule is not tolerated")))
	})

	It("rejects a plan that exceeds a pool limit", func() {
		a, b := pod("a", "500m"), pod("b", "500m")
		plan := planOf(claim(zoneA, []*scheduling.InstanceType{small}, a), claim(zoneA, []*scheduling.InstanceType{small}, b))
		Expect(check([]*corev1.Pod{a, b}, plan, func(in *scheduling.Input) {
			limited := *pool
			limited.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("3")}
			in.NodePools = []*scheduling.NodePool{&limited}
		})).To(ContainElement(ContainSubstring("over its limit 3")))
	})

	It("rejects a plan that forgets a pod", func() {
		a, b := pod("a", "500m"), pod("b", "500m")
		Expect(check([]*corev1.Pod{a, b}, planOf(claim(zoneA, []*scheduling.InstanceType{small}, a)))).To(ContainElement(ContainSubstring("pod b is placed or reported 0 times")))
	})
})
