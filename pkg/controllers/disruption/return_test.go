package disruption_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider"
	"github.com/backstop-sh/backstop/pkg/cloudprovider/fake"
	"github.com/backstop-sh/backstop/pkg/controllers/disruption"
	"github.com/backstop-sh/backstop/pkg/controllers/metrics"
	"github.com/backstop-sh/backstop/pkg/controllers/provisioning"
	"github.com/backstop-sh/backstop/pkg/scheduling"
	"github.com/backstop-sh/backstop/test"
)

// m5Large is the one instance type of these tests: On-Demand at $0.096/h,
// Spot at spotPrice, in zone-a.
func m5Large(spotPrice float64, spot scheduling.Offering) *scheduling.InstanceType {
	spot.Zone, spot.CapacityType, spot.Price = "zone-a", v1.CapacityTypeSpot, spotPrice
	return &scheduling.InstanceType{
		Name: "m5.large",
		Requirements: scheduling.NewRequirements(
			scheduling.MustRequirement(corev1.LabelInstanceTypeStable, v1.OpIn, "m5.large"),
			scheduling.MustRequirement(corev1.LabelArchStable, v1.OpIn, "amd64"),
			scheduling.MustRequirement(corev1.LabelOSStable, v1.OpIn, "linux")),
		Capacity: scheduling.Resources{CPU: 2000, Memory: 8 << 30, Pods: 29},
		Offerings: []scheduling.Offering{
			{Zone: "zone-a", CapacityType: v1.CapacityTypeOnDemand, Price: 0.096, Available: true},
			spot,
		},
	}
}

var _ = Describe("returning to the preferred pool", func() {
	var (
		ctx   = context.Background()
		clk   *clocktesting.FakeClock
		cloud *fake.CloudProvider
		reg   *prometheus.Registry
		// Registered once per spec; a restarted controller counts on.
		returnMetrics *disruption.ReturnMetrics
		lifecycle     *metrics.Lifecycle
		recorder      *events.FakeRecorder
		opts          disruption.ReturnOptions
		ns            string
		// fallback is the On-Demand NodeClaim the spec is about; node its Node.
		fallback *v1.NodeClaim
		node     *corev1.Node
	)

	newReplacer := func() *disruption.Replacer {
		prov := provisioning.New(env.Client, recorder, cloud, clk, provisioning.NewMetrics(prometheus.NewRegistry()), provisioning.Options{
			BatchIdleDuration: time.Second, BatchMaxDuration: 10 * time.Second})
		r := disruption.NewReplacer(env.Client, recorder, clk, prov, opts, returnMetrics)
		r.Lifecycle = lifecycle
		r.Cloud = cloud
		return r
	}
	sample := func(name string, labels map[string]string) float64 {
		v, _ := test.Metric(reg, name, labels)
		return v
	}
	pool := func(name string, weight int32, capacityType string, mutate ...func(*v1.NodePool)) *v1.NodePool {
		p := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.NodePoolSpec{
			Weight: ptr.To(weight),
			Template: v1.NodeClaimTemplate{Spec: v1.NodeClaimTemplateSpec{
				NodeClassRef: &v1.NodeClassReference{Group: awsv1.Group, Kind: "EC2NodeClass", Name: "default"},
				Requirements: []v1.NodeSelectorRequirementWithMinValues{{Key: v1.CapacityTypeLabelKey, Operator: v1.OpIn, Values: []string{capacityType}}},
			}},
			// Consolidation off: these specs are about returns alone.
			Disruption: v1.Disruption{ConsolidateAfter: v1.MustParseNillableDuration("Never"), Budgets: []v1.Budget{{Nodes: "100%"}}},
		}}
		for _, m := range mutate {
			m(p)
		}
		Expect(env.Client.Create(ctx, p)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(env.Client.Delete(ctx, p))).To(Succeed()) })
		return p
	}
	// makeNode makes an initialized NodeClaim of the pool with its Node.
	makeNode := func(name, poolName, capacityType string) (*v1.NodeClaim, *corev1.Node) {
		labels := map[string]string{v1.NodePoolLabelKey: poolName, v1.CapacityTypeLabelKey: capacityType,
			corev1.LabelInstanceTypeStable: "m5.large", corev1.LabelTopologyZone: "zone-a", corev1.LabelArchStable: "amd64",
			corev1.LabelOSStable: "linux", corev1.LabelHostname: name}
		claim := &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
			Spec: v1.NodeClaimSpec{NodeClassRef: &v1.NodeClassReference{Group: awsv1.Group, Kind: "EC2NodeClass", Name: "default"}}}
		Expect(env.Client.Create(ctx, claim)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(env.Client.Delete(ctx, claim))).To(Succeed()) })
		claim.Status.NodeName = name
		claim.Status.ProviderID = "fake:///" + name
		meta.SetStatusCondition(&claim.Status.Conditions, metav1.Condition{Type: v1.ConditionInitialized, Status: metav1.ConditionTrue, Reason: "Initialized"})
		Expect(env.Client.Status().Update(ctx, claim)).To(Succeed())
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Spec: corev1.NodeSpec{ProviderID: claim.Status.ProviderID}}
		Expect(env.Client.Create(ctx, n)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(env.Client.Delete(ctx, n))).To(Succeed()) })
		n.Status.Allocatable = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1900m"), corev1.ResourceMemory: resource.MustParse("7Gi"), corev1.ResourcePods: resource.MustParse("29")}
		n.Status.Capacity = n.Status.Allocatable
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
		Expect(env.Client.Status().Update(ctx, n)).To(Succeed())
		return claim, n
	}
	// runPod binds a pod of a ReplicaSet to the node.
	runPod := func(name, nodeName string, mutate ...func(*corev1.Pod)) *corev1.Pod {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "web"},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web", UID: types.UID("rs-web"), Controller: ptr.To(true)}}},
			Spec: corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "app", Image: "app", Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("1Gi")}}}}},
		}
		for _, m := range mutate {
			m(pod)
		}
		Expect(env.Client.Create(ctx, pod)).To(Succeed())
		pod.Status.Phase = corev1.PodRunning
		Expect(env.Client.Status().Update(ctx, pod)).To(Succeed())
		return pod
	}
	replacements := func() []v1.NodeClaim {
		var list v1.NodeClaimList
		Expect(env.Client.List(ctx, &list)).To(Succeed())
		var out []v1.NodeClaim
		for _, c := range list.Items {
			if c.Annotations[disruption.ReplacementForAnnotation] == fallback.Name && c.DeletionTimestamp == nil {
				out = append(out, c)
			}
		}
		return out
	}
	current := func() *v1.NodeClaim {
		c := &v1.NodeClaim{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(fallback), c); err != nil {
			return nil
		}
		return c
	}
	// hold keeps the fallback readable once deleted (the suite's cleanup
	// lets it go); reasonOf reads its DisruptionReason.
	hold := func() {
		c := current()
		c.Finalizers = append(c.Finalizers, "test.backstop.sh/hold")
		Expect(env.Client.Update(ctx, c)).To(Succeed())
	}
	reasonOf := func(c *v1.NodeClaim) string {
		cond := meta.FindStatusCondition(c.Status.Conditions, v1.ConditionDisruptionReason)
		if cond == nil || cond.Status != metav1.ConditionTrue {
			return ""
		}
		return cond.Reason
	}
	initialize := func(c *v1.NodeClaim) {
		meta.SetStatusCondition(&c.Status.Conditions, metav1.Condition{Type: v1.ConditionInitialized, Status: metav1.ConditionTrue, Reason: "Initialized"})
		Expect(env.Client.Status().Update(ctx, c)).To(Succeed())
	}
	drainEvents := func() string { return strings.Join(test.DrainEvents(recorder), "\n") }

	BeforeEach(func() {
		clk = clocktesting.NewFakeClock(time.Now())
		cloud = fake.New(clk)
		cloud.Types = []*scheduling.InstanceType{m5Large(0.035, scheduling.Offering{Available: true})}
		reg = prometheus.NewRegistry()
		returnMetrics, lifecycle = disruption.NewReturnMetrics(reg), metrics.NewLifecycle(reg)
		recorder = events.NewFakeRecorder(100)
		opts = disruption.DefaultReturnOptions()
		nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "return-"}}
		Expect(env.Client.Create(ctx, nsObj)).To(Succeed())
		ns = nsObj.Name
		DeferCleanup(func() {
			var pods corev1.PodList
			Expect(env.Client.List(ctx, &pods, client.InNamespace(ns))).To(Succeed())
			for i := range pods.Items {
				Expect(client.IgnoreNotFound(env.Client.Delete(ctx, &pods.Items[i], client.GracePeriodSeconds(0)))).To(Succeed())
			}
			// Replacements carry the termination finalizer; nothing here
			// terminates them.
			var claims v1.NodeClaimList
			Expect(env.Client.List(ctx, &claims)).To(Succeed())
			for i := range claims.Items {
				c := &claims.Items[i]
				c.Finalizers = nil
				Expect(client.IgnoreNotFound(env.Client.Update(ctx, c))).To(Succeed())
				Expect(client.IgnoreNotFound(env.Client.Delete(ctx, c))).To(Succeed())
			}
		})
		pool("spot", 100, v1.CapacityTypeSpot)
		pool("on-demand", 10, v1.CapacityTypeOnDemand)
		fallback, node = makeNode("fallback-1", "on-demand", v1.CapacityTypeOnDemand)
	})

	It("replaces a fallback node with Spot, and drains it only once the replacement has initialized", func() {
		runPod("web-1", node.Name)
		r := newReplacer()
		Expect(r.Round(ctx)).To(Succeed())
		rs := replacements()
		Expect(rs).To(HaveLen(1), "one Spot replacement for the one On-Demand node")
		Expect(rs[0].Labels).To(HaveKeyWithValue(v1.NodePoolLabelKey, "spot"))
		Expect(current().Annotations).To(HaveKeyWithValue(disruption.ReplacingAnnotation, "spot"))
		Expect(current().DeletionTimestamp).To(BeNil(), "the node stays until its replacement is ready")
		Expect(drainEvents()).To(ContainSubstring("ReturnToPreferredPool Returning to nodepool spot: replaced by m5.large spot"))
		Expect(sample("karpenter_voluntary_disruption_decisions_total", map[string]string{"decision": "replace", "reason": "underutilized", "consolidation_type": "return"})).To(Equal(1.0))

		Expect(r.Round(ctx)).To(Succeed())
		Expect(replacements()).To(HaveLen(1), "a return in progress starts nothing more")
		Expect(current()).NotTo(BeNil())

		initialize(&rs[0])
		hold()
		Expect(reasonOf(current())).To(BeEmpty())
		Expect(r.Round(ctx)).To(Succeed())
		Expect(current().DeletionTimestamp).NotTo(BeNil(), "drained and deleted once the replacement initialized")
		Expect(reasonOf(current())).To(Equal("Underutilized"), "a return is a consolidation, as Karpenter's reasons go")
		Expect(drainEvents()).To(ContainSubstring("ReturnedToPreferredPool"))
		Expect(sample("backstop_returns_total", map[string]string{"from": "on-demand", "to": "spot", "result": "completed"})).To(Equal(1.0))
		Expect(sample("karpenter_nodeclaims_disrupted_total", map[string]string{"nodepool": "on-demand", "reason": "underutilized", "capacity_type": "on-demand"})).To(Equal(1.0))
	})

	It("taints the node once its replacement exists, again after a crash, and untaints it on rollback", func() {
		runPod("web-1", node.Name)
		tainted := func() bool {
			n := &corev1.Node{}
			Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(node), n)).To(Succeed())
			for _, t := range n.Spec.Taints {
				if t.MatchTaint(&v1.DisruptedNoScheduleTaint) {
					return true
				}
			}
			return false
		}
		r := newReplacer()
		Expect(r.Round(ctx)).To(Succeed())
		Expect(replacements()).To(HaveLen(1))
		Expect(tainted()).To(BeTrue(), "karpenter.sh/disrupted:NoSchedule while the replacement launches")

		// A crash between the replacement's create and the taint.
		n := &corev1.Node{}
		Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(node), n)).To(Succeed())
		n.Spec.Taints = nil
		Expect(env.Client.Update(ctx, n)).To(Succeed())
		Expect(newReplacer().Round(ctx)).To(Succeed())
		Expect(tainted()).To(BeTrue(), "the next round taints it")

		clk.Step(opts.Timeout)
		Expect(r.Round(ctx)).To(Succeed())
		Expect(current().Annotations).NotTo(HaveKey(disruption.ReplacingAnnotation), "rolled back")
		Expect(tainted()).To(BeFalse(), "the node stays, open to pods again")
	})

	It("returns to a pool of other requirements only when the fallback pool opts in", func() {
		runPod("web-1", node.Name)
		p := &v1.NodePool{}
		Expect(env.Client.Get(ctx, client.ObjectKey{Name: "spot"}, p)).To(Succeed())
		p.Spec.Template.Spec.Requirements = append(p.Spec.Template.Spec.Requirements,
			v1.NodeSelectorRequirementWithMinValues{Key: corev1.LabelInstanceTypeStable, Operator: v1.OpIn, Values: []string{"m5.large"}})
		Expect(env.Client.Update(ctx, p)).To(Succeed())
		Expect(newReplacer().Round(ctx)).To(Succeed())
		Expect(replacements()).To(BeEmpty(), "the pools differ by more than capacity type")
		annotatePool("on-demand", disruption.ReturnAnnotation, "true")
		Expect(newReplacer().Round(ctx)).To(Succeed())
		Expect(replacements()).To(HaveLen(1))
	})

	It("does not count twice on the same room in one round", func() {
		runPod("web-1", node.Name)
		other, otherNode := makeNode("fallback-2", "on-demand", v1.CapacityTypeOnDemand)
		runPod("web-2", otherNode.Name)
		// A Spot node with room for one of the two pods; no new Spot node
		// can be launched.
		makeNode("spot-a", "spot", v1.CapacityTypeSpot)
		cloud.Types = []*scheduling.InstanceType{m5Large(0.035, scheduling.Offering{Available: false})}
		Expect(newReplacer().Round(ctx)).To(Succeed())
		marked := 0
		for _, c := range []*v1.NodeClaim{fallback, other} {
			Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(c), c)).To(Succeed())
			if c.Annotations[disruption.ReplacingAnnotation] != "" {
				marked++
			}
		}
		Expect(marked).To(Equal(1), "the Spot node's room takes one of the pods, not both")
	})

	It("rolls back when the replacement fails to launch, and waits the cool-down before trying again", func() {
		runPod("web-1", node.Name)
		r := newReplacer()
		Expect(r.Round(ctx)).To(Succeed())
		rs := replacements()
		Expect(rs).To(HaveLen(1))
		// The launch controller deletes a NodeClaim EC2 had no capacity for.
		Expect(env.Client.Delete(ctx, &rs[0])).To(Succeed())
		Expect(r.Round(ctx)).To(Succeed())
		Expect(current().Annotations).To(HaveKey(disruption.ReplacingAnnotation), "the replacement may not be in the cache yet")
		clk.Step(time.Minute)
		Expect(r.Round(ctx)).To(Succeed())
		Expect(current().Annotations).NotTo(HaveKey(disruption.ReplacingAnnotation))
		Expect(current().DeletionTimestamp).To(BeNil(), "the node stays")
		Expect(drainEvents()).To(ContainSubstring("ReturnRolledBack"))
		Expect(sample("backstop_returns_total", map[string]string{"result": "rolled_back"})).To(Equal(1.0))

		Expect(r.Round(ctx)).To(Succeed())
		Expect(replacements()).To(BeEmpty(), "not again within the cool-down")
		clk.Step(opts.Cooldown)
		Expect(r.Round(ctx)).To(Succeed())
		Expect(replacements()).To(HaveLen(1), "tried again after the cool-down")
	})

	It("rolls back when the replacement does not initialize in time", func() {
		runPod("web-1", node.Name)
		r := newReplacer()
		Expect(r.Round(ctx)).To(Succeed())
		Expect(replacements()).To(HaveLen(1))
		clk.Step(opts.Timeout)
		Expect(r.Round(ctx)).To(Succeed())
		Expect(current().Annotations).NotTo(HaveKey(disruption.ReplacingAnnotation))
		Expect(replacements()).To(BeEmpty(), "the slow replacement is removed")
	})

	It("carries a return on after a restart without starting another, and rolls back one cut short before its replacement existed", func() {
		runPod("web-1", node.Name)
		Expect(newReplacer().Round(ctx)).To(Succeed())
		Expect(replacements()).To(HaveLen(1))
		// A new process: nothing in memory.
		r := newReplacer()
		Expect(r.Round(ctx)).To(Succeed())
		Expect(replacements()).To(HaveLen(1), "the restarted controller does not double the replacement")
		rs := replacements()
		initialize(&rs[0])
		Expect(r.Round(ctx)).To(Succeed())
		Expect(current()).To(BeNil())

		// A crash right after the node was marked, before any replacement.
		other, otherNode := makeNode("fallback-2", "on-demand", v1.CapacityTypeOnDemand)
		runPod("web-2", otherNode.Name)
		other.Annotations = map[string]string{disruption.ReplacingAnnotation: "spot", disruption.ReplacementsAnnotation: "1", disruption.ReasonAnnotation: disruption.ReasonReturn,
			disruption.StartedAnnotation: clk.Now().UTC().Format(time.RFC3339)}
		Expect(env.Client.Update(ctx, other)).To(Succeed())
		clk.Step(time.Minute)
		Expect(newReplacer().Round(ctx)).To(Succeed())
		Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(other), other)).To(Succeed())
		Expect(other.Annotations).NotTo(HaveKey(disruption.ReplacingAnnotation), "rolled back")
	})

	It("keeps the replacement from counting as empty while the node it replaces is there", func() {
		runPod("web-1", node.Name)
		Expect(newReplacer().Round(ctx)).To(Succeed())
		rs := replacements()
		Expect(rs).To(HaveLen(1))
		rs[0].Status.NodeName = "replacement-node"
		meta.SetStatusCondition(&rs[0].Status.Conditions, metav1.Condition{Type: v1.ConditionInitialized, Status: metav1.ConditionTrue, Reason: "Initialized"})
		Expect(env.Client.Status().Update(ctx, &rs[0])).To(Succeed())
		p := &v1.NodePool{}
		Expect(env.Client.Get(ctx, client.ObjectKey{Name: "spot"}, p)).To(Succeed())
		p.Spec.Disruption.ConsolidateAfter = v1.MustParseNillableDuration("0s")
		Expect(env.Client.Update(ctx, p)).To(Succeed())
		d := disruption.New(env.Client, recorder, clk)
		Expect(d.Disrupt(ctx)).To(Succeed())
		clk.Step(time.Minute)
		Expect(d.Disrupt(ctx)).To(Succeed())
		got := &v1.NodeClaim{}
		Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(&rs[0]), got)).To(Succeed())
		Expect(got.DeletionTimestamp).To(BeNil(), "an empty replacement waiting for its pods stays")
	})

	Describe("consolidation", func() {
		// consolidating turns consolidation on for the On-Demand pool
		// (after 1m) and makes Spot unavailable, so moves stay On-Demand.
		consolidating := func(policy v1.ConsolidationPolicy) {
			p := &v1.NodePool{}
			Expect(env.Client.Get(ctx, client.ObjectKey{Name: "on-demand"}, p)).To(Succeed())
			p.Spec.Disruption.ConsolidationPolicy = policy
			p.Spec.Disruption.ConsolidateAfter = v1.MustParseNillableDuration("1m")
			Expect(env.Client.Update(ctx, p)).To(Succeed())
			cloud.Types = []*scheduling.InstanceType{m5Large(0.035, scheduling.Offering{Available: false, LastUnavailable: clk.Now()})}
			opts.Enabled = false
		}
		half := func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU] = resource.MustParse("500m")
		}
		replacing := func(c *v1.NodeClaim) string {
			Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(c), c)).To(Succeed())
			return c.Annotations[disruption.ReplacingAnnotation]
		}
		// settle runs a round, then another after consolidateAfter: the
		// first sees the nodes' pods, the second finds them unchanged.
		settle := func(r *disruption.Replacer) {
			Expect(r.Round(ctx)).To(Succeed())
			clk.Step(time.Minute)
			Expect(r.Round(ctx)).To(Succeed())
		}

		It("replaces several underused nodes by one (multi-node)", func() {
			consolidating(v1.ConsolidationPolicyWhenEmptyOrUnderutilized)
			runPod("web-1", node.Name, half)
			b, bNode := makeNode("od-b", "on-demand", v1.CapacityTypeOnDemand)
			runPod("web-2", bNode.Name, half)
			settle(newReplacer())
			Expect(replacing(fallback)).NotTo(BeEmpty())
			Expect(replacing(b)).NotTo(BeEmpty())
			var list v1.NodeClaimList
			Expect(env.Client.List(ctx, &list)).To(Succeed())
			var repl []string
			for _, c := range list.Items {
				if of := c.Annotations[disruption.ReplacementForAnnotation]; of != "" {
					repl = append(repl, of)
				}
			}
			Expect(repl).To(ConsistOf("fallback-1,od-b"), "one new node for both")
			Expect(sample("karpenter_voluntary_disruption_decisions_total", map[string]string{"decision": "replace", "reason": "underutilized", "consolidation_type": "multi"})).To(Equal(1.0))
			Expect(drainEvents()).To(ContainSubstring("Underutilized Underutilized: replaced by m5.large on-demand"))
		})

		It("leaves a static NodePool's nodes alone: no consolidation, no return to Spot", func() {
			pool("static", 0, v1.CapacityTypeOnDemand, func(p *v1.NodePool) {
				p.Spec.Weight, p.Spec.Replicas = nil, ptr.To[int64](2)
				p.Spec.Disruption.ConsolidationPolicy = v1.ConsolidationPolicyWhenEmptyOrUnderutilized
				p.Spec.Disruption.ConsolidateAfter = v1.MustParseNillableDuration("1m")
			})
			a, aNode := makeNode("static-a", "static", v1.CapacityTypeOnDemand)
			runPod("web-1", aNode.Name, half)
			b, bNode := makeNode("static-b", "static", v1.CapacityTypeOnDemand)
			runPod("web-2", bNode.Name, half)
			settle(newReplacer())
			Expect(replacing(a)).To(BeEmpty())
			Expect(replacing(b)).To(BeEmpty())
		})

		It("deletes a node whose pods fit on another (single, delete)", func() {
			consolidating(v1.ConsolidationPolicyWhenEmptyOrUnderutilized)
			node.Annotations = map[string]string{disruption.DoNotDisruptAnnotation: "true"}
			Expect(env.Client.Update(ctx, node)).To(Succeed())
			runPod("web-1", node.Name, half)
			b, bNode := makeNode("od-b", "on-demand", v1.CapacityTypeOnDemand)
			runPod("web-2", bNode.Name, half)
			r := newReplacer()
			settle(r)
			Expect(replacing(fallback)).To(BeEmpty(), "do-not-disrupt")
			Expect(replacing(b)).To(Equal("existing nodes"))
			Expect(sample("karpenter_voluntary_disruption_decisions_total", map[string]string{"decision": "delete", "reason": "underutilized", "consolidation_type": "single"})).To(Equal(1.0))
			Expect(r.Round(ctx)).To(Succeed())
			Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(b), b)).NotTo(Succeed(), "deleted at once: nothing to wait for")
		})

		It("replaces a node with a cheaper one (single, replace)", func() {
			consolidating(v1.ConsolidationPolicyWhenEmptyOrUnderutilized)
			small := &scheduling.InstanceType{Name: "t3.small", Requirements: scheduling.NewRequirements(
				scheduling.MustRequirement(corev1.LabelInstanceTypeStable, v1.OpIn, "t3.small"),
				scheduling.MustRequirement(corev1.LabelArchStable, v1.OpIn, "amd64"),
				scheduling.MustRequirement(corev1.LabelOSStable, v1.OpIn, "linux")),
				Capacity:  scheduling.Resources{CPU: 2000, Memory: 2 << 30, Pods: 11},
				Offerings: []scheduling.Offering{{Zone: "zone-a", CapacityType: v1.CapacityTypeOnDemand, Price: 0.0208, Available: true}}}
			cloud.Types = append(cloud.Types, small)
			runPod("web-1", node.Name, half)
			settle(newReplacer())
			Expect(replacing(fallback)).To(Equal("on-demand"))
			Expect(replacements()).To(HaveLen(1))
			Expect(drainEvents()).To(ContainSubstring("Underutilized: replaced by t3.small on-demand"))
			Expect(sample("karpenter_voluntary_disruption_decisions_total", map[string]string{"decision": "replace", "reason": "underutilized", "consolidation_type": "single"})).To(Equal(1.0))
		})

		// reservable consolidates the On-Demand pool, lets it take reserved
		// capacity too, and gives m5.large a reservation, cr-1, with room for one.
		reservable := func() {
			consolidating(v1.ConsolidationPolicyWhenEmptyOrUnderutilized)
			p := &v1.NodePool{}
			Expect(env.Client.Get(ctx, client.ObjectKey{Name: "on-demand"}, p)).To(Succeed())
			p.Spec.Template.Spec.Requirements[0].Values = []string{v1.CapacityTypeOnDemand, v1.CapacityTypeReserved}
			Expect(env.Client.Update(ctx, p)).To(Succeed())
			it := cloud.Types[0]
			it.Offerings = append(it.Offerings, scheduling.Offering{Zone: "zone-a", CapacityType: v1.CapacityTypeReserved, Price: 0.096 / 1e7,
				Available: true, ReservationID: "cr-1", ReservationCapacity: 1})
		}

		DescribeTable("counts a NodeClaim put in the reservation and not launched yet against its room",
			func(inFlightTo string, moves bool) {
				reservable()
				pending := &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: "pending-reserved", Labels: map[string]string{v1.NodePoolLabelKey: "on-demand",
					v1.CapacityTypeLabelKey: v1.CapacityTypeReserved, scheduling.ReservationIDLabelKey: inFlightTo}},
					// Tainted: the pod cannot move onto it instead.
					Spec: v1.NodeClaimSpec{NodeClassRef: &v1.NodeClassReference{Group: awsv1.Group, Kind: "EC2NodeClass", Name: "default"},
						Taints: []corev1.Taint{{Key: "example.com/other", Effect: corev1.TaintEffectNoSchedule}}}}
				Expect(env.Client.Create(ctx, pending)).To(Succeed())
				DeferCleanup(func() { Expect(client.IgnoreNotFound(env.Client.Delete(ctx, pending))).To(Succeed()) })
				runPod("web-1", node.Name)
				settle(newReplacer())
				if moves {
					Expect(replacing(fallback)).To(Equal("on-demand"))
				} else {
					Expect(replacing(fallback)).To(BeEmpty(), "the reservation's one place is taken by the NodeClaim in flight")
				}
			},
			Entry("in flight to this reservation: no room left", "cr-1", false),
			Entry("in flight to another: room for the move", "cr-other", true),
		)

		It("moves an On-Demand node into a capacity reservation that has room (single, replace)", func() {
			reservable()
			runPod("web-1", node.Name)
			settle(newReplacer())
			Expect(replacing(fallback)).To(Equal("on-demand"))
			repl := replacements()
			Expect(repl).To(HaveLen(1))
			reqs := map[string][]string{}
			for _, r := range repl[0].Spec.Requirements {
				reqs[r.Key] = r.Values
			}
			Expect(reqs).To(HaveKeyWithValue(v1.CapacityTypeLabelKey, []string{v1.CapacityTypeReserved}))
			Expect(reqs).To(HaveKeyWithValue(scheduling.ReservationIDLabelKey, []string{"cr-1"}))
			Expect(drainEvents()).To(ContainSubstring("replaced by m5.large reserved"))
		})

		DescribeTable("leaves underused nodes alone",
			func(why string, setup func()) {
				consolidating(v1.ConsolidationPolicyWhenEmptyOrUnderutilized)
				runPod("web-1", node.Name, half)
				_, bNode := makeNode("od-b", "on-demand", v1.CapacityTypeOnDemand)
				runPod("web-2", bNode.Name, half)
				r := newReplacer()
				setup()
				settle(r)
				var list v1.NodeClaimList
				Expect(env.Client.List(ctx, &list)).To(Succeed())
				for _, c := range list.Items {
					Expect(c.Annotations).NotTo(HaveKey(disruption.ReplacingAnnotation), "%s: %s", why, c.Name)
				}
			},
			Entry("with consolidationPolicy WhenEmpty", "policy", func() { consolidating(v1.ConsolidationPolicyWhenEmpty) }),
			Entry("before consolidateAfter", "unchanged for 1m of 2m", func() {
				p := &v1.NodePool{}
				Expect(env.Client.Get(ctx, client.ObjectKey{Name: "on-demand"}, p)).To(Succeed())
				p.Spec.Disruption.ConsolidateAfter = v1.MustParseNillableDuration("2m")
				Expect(env.Client.Update(ctx, p)).To(Succeed())
			}),
			Entry("with consolidateAfter Never", "Never", func() {
				p := &v1.NodePool{}
				Expect(env.Client.Get(ctx, client.ObjectKey{Name: "on-demand"}, p)).To(Succeed())
				p.Spec.Disruption.ConsolidateAfter = v1.MustParseNillableDuration("Never")
				Expect(env.Client.Update(ctx, p)).To(Succeed())
			}),
			Entry("when the budget allows none", "budget 0", func() {
				p := &v1.NodePool{}
				Expect(env.Client.Get(ctx, client.ObjectKey{Name: "on-demand"}, p)).To(Succeed())
				p.Spec.Disruption.Budgets = []v1.Budget{{Nodes: "0"}}
				Expect(env.Client.Update(ctx, p)).To(Succeed())
			}),
			Entry("when a PodDisruptionBudget allows no disruption", "PDB", func() {
				pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
					Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ptr.To(intstr.FromInt32(0)), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}}
				Expect(env.Client.Create(ctx, pdb)).To(Succeed())
			}),
		)

		It("does not replace Spot by cheaper Spot", func() {
			Expect(env.Client.Delete(ctx, node)).To(Succeed(), "no other room")
			Expect(env.Client.Delete(ctx, fallback)).To(Succeed())
			p := &v1.NodePool{}
			Expect(env.Client.Get(ctx, client.ObjectKey{Name: "spot"}, p)).To(Succeed())
			p.Spec.Disruption.ConsolidationPolicy = v1.ConsolidationPolicyWhenEmptyOrUnderutilized
			p.Spec.Disruption.ConsolidateAfter = v1.MustParseNillableDuration("1m")
			Expect(env.Client.Update(ctx, p)).To(Succeed())
			small := &scheduling.InstanceType{Name: "t3.small", Requirements: scheduling.NewRequirements(
				scheduling.MustRequirement(corev1.LabelInstanceTypeStable, v1.OpIn, "t3.small"),
				scheduling.MustRequirement(corev1.LabelArchStable, v1.OpIn, "amd64"),
				scheduling.MustRequirement(corev1.LabelOSStable, v1.OpIn, "linux")),
				Capacity:  scheduling.Resources{CPU: 2000, Memory: 2 << 30, Pods: 11},
				Offerings: []scheduling.Offering{{Zone: "zone-a", CapacityType: v1.CapacityTypeSpot, Price: 0.008, Available: true}}}
			cloud.Types = append(cloud.Types, small)
			opts.Enabled = false
			s, sNode := makeNode("spot-a", "spot", v1.CapacityTypeSpot)
			runPod("web-1", sNode.Name, half)
			settle(newReplacer())
			Expect(replacing(s)).To(BeEmpty(), "a cheaper Spot offering is no reason to move off Spot capacity EC2 chose")
		})

		It("leaves a node alone when nothing would be cheaper", func() {
			consolidating(v1.ConsolidationPolicyWhenEmptyOrUnderutilized)
			node.Annotations = map[string]string{disruption.DoNotDisruptAnnotation: "true"}
			Expect(env.Client.Update(ctx, node)).To(Succeed())
			runPod("web-1", node.Name)
			b, bNode := makeNode("od-b", "on-demand", v1.CapacityTypeOnDemand)
			runPod("web-2", bNode.Name)
			r := newReplacer()
			settle(r)
			Expect(replacing(b)).To(BeEmpty(), "its pod fits nowhere else, and an m5.large is the cheapest that holds it")
			// Nothing changed: the search is not repeated every round.
			before := cloud.Calls("InstanceTypes")
			Expect(r.Round(ctx)).To(Succeed())
			Expect(cloud.Calls("InstanceTypes")).To(Equal(before), "no snapshot taken for a search that found nothing on this cluster")
			clk.Step(time.Minute)
			Expect(r.Round(ctx)).To(Succeed())
			Expect(cloud.Calls("InstanceTypes")).To(BeNumerically(">", before), "searched again after a minute")
		})
	})

	Describe("drift", func() {
		// stamp gives the fallback NodeClaim its pool's template hash, as
		// the provisioner does at creation.
		stamp := func(version string) {
			p := &v1.NodePool{}
			Expect(env.Client.Get(ctx, client.ObjectKey{Name: "on-demand"}, p)).To(Succeed())
			fallback.Annotations = map[string]string{v1.NodePoolHashAnnotationKey: p.TemplateHash(), v1.NodePoolHashVersionAnnotationKey: version}
			Expect(env.Client.Update(ctx, fallback)).To(Succeed())
		}
		onDemandPool := func(mutate func(*v1.NodePool)) {
			p := &v1.NodePool{}
			Expect(env.Client.Get(ctx, client.ObjectKey{Name: "on-demand"}, p)).To(Succeed())
			mutate(p)
			Expect(env.Client.Update(ctx, p)).To(Succeed())
		}
		drift := func() *metav1.Condition {
			c := current()
			return meta.FindStatusCondition(c.Status.Conditions, v1.ConditionDrifted)
		}

		DescribeTable("marks a drifted node and replaces it, replacement first",
			func(want cloudprovider.DriftReason, setup func()) {
				runPod("web-1", node.Name)
				opts.Enabled = false
				setup()
				r := newReplacer()
				Expect(r.Round(ctx)).To(Succeed())
				cond := drift()
				Expect(cond).NotTo(BeNil(), "Drifted condition")
				Expect(cond.Reason).To(Equal(string(want)))
				Expect(current().Annotations).To(HaveKeyWithValue(disruption.ReasonAnnotation, disruption.ReasonDrifted))
				Expect(replacements()).To(HaveLen(1), "a replacement is launched before the node drains")
				Expect(current().DeletionTimestamp).To(BeNil())
				Expect(drainEvents()).To(ContainSubstring("Drifted (" + string(want)))
				Expect(sample("karpenter_voluntary_disruption_decisions_total", map[string]string{"decision": "replace", "reason": "drifted"})).To(Equal(1.0))
				rs := replacements()
				initialize(&rs[0])
				hold()
				Expect(r.Round(ctx)).To(Succeed())
				Expect(current().DeletionTimestamp).NotTo(BeNil(), "drained once the replacement initialized")
				Expect(reasonOf(current())).To(Equal("Drifted"))
				Expect(sample("karpenter_nodeclaims_disrupted_total", map[string]string{"reason": "drifted"})).To(Equal(1.0))
			},
			Entry("the NodePool's template changed", disruption.NodePoolDrift, func() {
				stamp(v1.NodePoolHashVersion)
				onDemandPool(func(p *v1.NodePool) { p.Spec.Template.ObjectMeta.Labels = map[string]string{"team": "payments"} })
			}),
			Entry("the node no longer meets the NodePool's requirements", disruption.RequirementsDrift, func() {
				onDemandPool(func(p *v1.NodePool) {
					p.Spec.Template.Spec.Requirements = append(p.Spec.Template.Spec.Requirements,
						v1.NodeSelectorRequirementWithMinValues{Key: corev1.LabelInstanceTypeStable, Operator: v1.OpIn, Values: []string{"c5.large"}})
				})
			}),
			Entry("the NodeClass changed", cloudprovider.NodeClassDrift, func() {
				cloud.Drifted = map[string]cloudprovider.DriftReason{"fallback-1": cloudprovider.NodeClassDrift}
			}),
			Entry("the image is no longer resolved", cloudprovider.AMIDrift, func() { cloud.Drifted = map[string]cloudprovider.DriftReason{"fallback-1": cloudprovider.AMIDrift} }),
			Entry("the subnet is no longer resolved", cloudprovider.SubnetDrift, func() { cloud.Drifted = map[string]cloudprovider.DriftReason{"fallback-1": cloudprovider.SubnetDrift} }),
			Entry("the security groups are no longer resolved", cloudprovider.SecurityGroupDrift, func() {
				cloud.Drifted = map[string]cloudprovider.DriftReason{"fallback-1": cloudprovider.SecurityGroupDrift}
			}),
		)

		It("records a static NodePool's drift and leaves its replacement to the static controller", func() {
			pool("static", 0, v1.CapacityTypeOnDemand, func(p *v1.NodePool) { p.Spec.Weight, p.Spec.Replicas = nil, ptr.To[int64](1) })
			a, _ := makeNode("static-a", "static", v1.CapacityTypeOnDemand)
			cloud.Drifted = map[string]cloudprovider.DriftReason{"static-a": cloudprovider.AMIDrift}
			Expect(newReplacer().Round(ctx)).To(Succeed())
			Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(a), a)).To(Succeed())
			cond := meta.FindStatusCondition(a.Status.Conditions, v1.ConditionDrifted)
			Expect(cond).NotTo(BeNil(), "Drifted condition")
			Expect(cond.Reason).To(Equal(string(cloudprovider.AMIDrift)))
			Expect(a.Annotations).NotTo(HaveKey(disruption.ReplacingAnnotation))
			Expect(replacements()).To(BeEmpty())
		})

		It("does not compare a hash another version stamped (a Karpenter NodeClaim after migration)", func() {
			runPod("web-1", node.Name)
			stamp("v3")
			onDemandPool(func(p *v1.NodePool) { p.Spec.Template.ObjectMeta.Labels = map[string]string{"team": "payments"} })
			Expect(newReplacer().Round(ctx)).To(Succeed())
			Expect(drift()).To(BeNil())
		})

		// beingReplaced adds a node of the pool with room that is itself being
		// replaced, and a Drifted budget of n nodes.
		beingReplaced := func(n string) {
			runPod("web-1", node.Name)
			opts.Enabled = false
			busy, _ := makeNode("fallback-busy", "on-demand", v1.CapacityTypeOnDemand)
			busy.Annotations = map[string]string{disruption.ReplacingAnnotation: "spot", disruption.ReasonAnnotation: "drifted",
				disruption.ReplacementsAnnotation: "1", disruption.StartedAnnotation: clk.Now().UTC().Format(time.RFC3339)}
			Expect(env.Client.Update(ctx, busy)).To(Succeed())
			onDemandPool(func(p *v1.NodePool) {
				p.Spec.Disruption.Budgets = []v1.Budget{{Nodes: n, Reasons: []v1.DisruptionReason{v1.DisruptionReasonDrifted}}}
			})
			cloud.Drifted = map[string]cloudprovider.DriftReason{"fallback-1": cloudprovider.AMIDrift}
			Expect(newReplacer().Round(ctx)).To(Succeed())
			Expect(drift()).NotTo(BeNil())
		}

		It("counts a node already being replaced against the Drifted budget", func() {
			beingReplaced("1")
			Expect(current().Annotations).NotTo(HaveKey(disruption.ReplacingAnnotation), "the budget's one node is the one already being replaced")
		})

		It("never moves pods onto a node that is being replaced itself", func() {
			beingReplaced("2")
			Expect(current().Annotations).To(HaveKeyWithValue(disruption.ReplacingAnnotation, "spot"),
				"a new node, not the room of a node that drains next")
			Expect(replacements()).To(HaveLen(1))
		})

		It("marks but waits when the Drifted budget allows none, and clears the mark when drift ends", func() {
			runPod("web-1", node.Name)
			opts.Enabled = false
			onDemandPool(func(p *v1.NodePool) {
				p.Spec.Disruption.Budgets = []v1.Budget{{Nodes: "0", Reasons: []v1.DisruptionReason{v1.DisruptionReasonDrifted}}}
			})
			cloud.Drifted = map[string]cloudprovider.DriftReason{"fallback-1": cloudprovider.AMIDrift}
			r := newReplacer()
			Expect(r.Round(ctx)).To(Succeed())
			Expect(drift()).NotTo(BeNil())
			Expect(replacements()).To(BeEmpty(), "budget 0 for Drifted")
			cloud.Drifted = nil
			Expect(r.Round(ctx)).To(Succeed())
			Expect(drift()).To(BeNil(), "no longer drifted")
		})
	})

	DescribeTable("leaves the fallback node where it is",
		func(why string, setup func()) {
			runPod("web-1", node.Name)
			setup()
			Expect(newReplacer().Round(ctx)).To(Succeed())
			Expect(replacements()).To(BeEmpty(), why)
			if c := current(); c != nil {
				Expect(c.Annotations).NotTo(HaveKey(disruption.ReplacingAnnotation), why)
			}
		},
		Entry("when returns are turned off by flag", "--return-to-preferred-pool=false", func() { opts.Enabled = false }),
		Entry("when the fallback pool is annotated off", "annotation on the pool returned from", func() {
			annotatePool("on-demand", disruption.ReturnAnnotation, "false")
		}),
		Entry("when the preferred pool is annotated off", "annotation on the pool returned to", func() {
			annotatePool("spot", disruption.ReturnAnnotation, "false")
		}),
		Entry("when the pools differ by more than capacity type", "different taints", func() {
			p := &v1.NodePool{}
			Expect(env.Client.Get(ctx, client.ObjectKey{Name: "spot"}, p)).To(Succeed())
			p.Spec.Template.Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "batch", Effect: corev1.TaintEffectNoSchedule}}
			Expect(env.Client.Update(ctx, p)).To(Succeed())
		}),
		Entry("when the Spot offering is unavailable", "Spot marked", func() {
			cloud.Types = []*scheduling.InstanceType{m5Large(0.035, scheduling.Offering{Available: false, LastUnavailable: clk.Now()})}
		}),
		Entry("when EC2 refused the Spot offering within the cool-down", "refused 4 minutes ago, cool-down 5 minutes", func() {
			cloud.Types = []*scheduling.InstanceType{m5Large(0.035, scheduling.Offering{Available: true, LastUnavailable: clk.Now().Add(-4 * time.Minute)})}
		}),
		Entry("when the saving is below the threshold", "Spot at 95% of On-Demand", func() {
			cloud.Types = []*scheduling.InstanceType{m5Large(0.092, scheduling.Offering{Available: true})}
		}),
		Entry("when the budget allows no underutilized disruption", "budget 0 for Underutilized", func() {
			p := &v1.NodePool{}
			Expect(env.Client.Get(ctx, client.ObjectKey{Name: "on-demand"}, p)).To(Succeed())
			p.Spec.Disruption.Budgets = []v1.Budget{{Nodes: "0", Reasons: []v1.DisruptionReason{v1.DisruptionReasonUnderutilized}}, {Nodes: "100%"}}
			Expect(env.Client.Update(ctx, p)).To(Succeed())
		}),
		Entry("when the rate limit is used up", "max 0 per interval", func() { opts.MaxPerInterval = 0 }),
		Entry("when pods are pending", "provisioning goes first", func() {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pending"},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
			Expect(env.Client.Create(ctx, pod)).To(Succeed())
			pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable}}
			Expect(env.Client.Status().Update(ctx, pod)).To(Succeed())
		}),
		Entry("when a pod cannot run on the preferred pool", "a pod selects On-Demand", func() {
			runPod("on-demand-only", node.Name, func(p *corev1.Pod) {
				p.Spec.NodeSelector = map[string]string{v1.CapacityTypeLabelKey: v1.CapacityTypeOnDemand}
				p.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU] = resource.MustParse("100m")
			})
		}),
		Entry("when a pod of the node carries do-not-disrupt", "pod annotation", func() {
			runPod("precious", node.Name, func(p *corev1.Pod) {
				p.Annotations = map[string]string{disruption.DoNotDisruptAnnotation: "true"}
				p.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU] = resource.MustParse("100m")
			})
		}),
		Entry("when the node carries do-not-disrupt", "node annotation", func() {
			node.Annotations = map[string]string{disruption.DoNotDisruptAnnotation: "true"}
			Expect(env.Client.Update(ctx, node)).To(Succeed())
		}),
		Entry("when a PodDisruptionBudget allows no disruption", "PDB at 0", func() {
			pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
				Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ptr.To(intstr.FromInt32(0)), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}}
			Expect(env.Client.Create(ctx, pdb)).To(Succeed())
		}),
	)

	It("tells once what blocks a node it would return, and a do-not-disrupt value that does not parse", func() {
		precious := runPod("precious", node.Name, func(p *corev1.Pod) {
			p.Annotations = map[string]string{disruption.DoNotDisruptAnnotation: "true"}
			p.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU] = resource.MustParse("100m")
		})
		r := newReplacer()
		Expect(r.Round(ctx)).To(Succeed())
		Expect(replacements()).To(BeEmpty())
		blocked := "DisruptionBlocked Cannot disrupt node: pod " + ns + "/precious carries karpenter.sh/do-not-disrupt"
		Expect(strings.Count(drainEvents(), blocked)).To(Equal(2), "on the NodeClaim and its Node")
		Expect(r.Round(ctx)).To(Succeed())
		Expect(drainEvents()).NotTo(ContainSubstring("DisruptionBlocked"), "said once, not every round")

		Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(precious), precious)).To(Succeed())
		precious.Annotations[disruption.DoNotDisruptAnnotation] = "soon"
		Expect(env.Client.Update(ctx, precious)).To(Succeed())
		Expect(r.Round(ctx)).To(Succeed())
		said := drainEvents()
		Expect(said).To(And(ContainSubstring("InvalidDoNotDisruptAnnotation"), ContainSubstring(`"soon"`)))
		Expect(replacements()).To(HaveLen(1), "a value that does not parse protects nothing")
	})
})

// whyNotAt is the time the table above asks at.
var whyNotAt = time.Date(2026, 11, 22, 15, 0, 0, 0, time.UTC)

// protectedFor annotates the pod do-not-disrupt for d, started ago before whyNotAt.
func protectedFor(pod *corev1.Pod, d string, ago time.Duration) {
	pod.Annotations[disruption.DoNotDisruptAnnotation] = d
	pod.Status.StartTime = &metav1.Time{Time: whyNotAt.Add(-ago)}
}

func annotatePool(name, key, value string) {
	p := &v1.NodePool{}
	Expect(env.Client.Get(context.Background(), client.ObjectKey{Name: name}, p)).To(Succeed())
	p.Annotations = map[string]string{key: value}
	Expect(env.Client.Update(context.Background(), p)).To(Succeed())
}

var _ = DescribeTable("why a node may not be disrupted",
	func(c disruption.Candidate, pdbs []policyv1.PodDisruptionBudget, want disruption.Blocker) {
		got := disruption.WhyNot(c, pdbs, whyNotAt)
		if want == "" {
			Expect(got).To(BeNil())
			return
		}
		Expect(got).NotTo(BeNil())
		Expect(got.Blocker).To(Equal(want), got.String())
	},
	Entry("a disruptable node", candidate(), nil, disruption.Blocker("")),
	Entry("a NodeClaim being deleted", candidate(func(c *disruption.Candidate) { c.Claim.DeletionTimestamp = &metav1.Time{} }), nil, disruption.BlockedDeleting),
	Entry("an interrupted NodeClaim", candidate(func(c *disruption.Candidate) { c.Claim.Annotations[v1.InterruptedAnnotation] = "spot_interrupted" }), nil, disruption.BlockedInterrupted),
	Entry("a NodeClaim already returning", candidate(func(c *disruption.Candidate) { c.Claim.Annotations[disruption.ReplacingAnnotation] = "spot" }), nil, disruption.BlockedInProgress),
	Entry("a NodeClaim without a node", candidate(func(c *disruption.Candidate) { c.Node = nil }), nil, disruption.BlockedNodeNotRegistered),
	Entry("a node not initialized", candidate(func(c *disruption.Candidate) { c.Claim.Status.Conditions = nil }), nil, disruption.BlockedNotInitialized),
	Entry("a NodeClaim with do-not-disrupt", candidate(func(c *disruption.Candidate) { c.Claim.Annotations[disruption.DoNotDisruptAnnotation] = "true" }), nil, disruption.BlockedDoNotDisrupt),
	Entry("a Node with do-not-disrupt", candidate(func(c *disruption.Candidate) { c.Node.Annotations[disruption.DoNotDisruptAnnotation] = "true" }), nil, disruption.BlockedDoNotDisrupt),
	Entry("a pod with do-not-disrupt", candidate(func(c *disruption.Candidate) { c.Pods[0].Annotations[disruption.DoNotDisruptAnnotation] = "true" }), nil, disruption.BlockedPodDoNotDisrupt),
	Entry("a pod protected for 1h, started 59m ago", candidate(func(c *disruption.Candidate) { protectedFor(c.Pods[0], "1h", 59*time.Minute) }), nil, disruption.BlockedPodDoNotDisrupt),
	Entry("a pod protected for 1h, started 1h ago", candidate(func(c *disruption.Candidate) { protectedFor(c.Pods[0], "1h", time.Hour) }), nil, disruption.Blocker("")),
	Entry("a pod protected for 1h, not started yet", candidate(func(c *disruption.Candidate) {
		c.Pods[0].Annotations[disruption.DoNotDisruptAnnotation] = "1h"
		c.Pods[0].Status.StartTime = nil
	}), nil, disruption.BlockedPodDoNotDisrupt),
	Entry("a pod with do-not-disrupt false", candidate(func(c *disruption.Candidate) { c.Pods[0].Annotations[disruption.DoNotDisruptAnnotation] = "false" }), nil, disruption.Blocker("")),
	Entry("a pod with do-not-disrupt that does not parse", candidate(func(c *disruption.Candidate) { c.Pods[0].Annotations[disruption.DoNotDisruptAnnotation] = "soon" }), nil, disruption.Blocker("")),
	Entry("a pod without a controller", candidate(func(c *disruption.Candidate) { c.Pods[0].OwnerReferences = nil }), nil, disruption.BlockedPodNoController),
	Entry("a PodDisruptionBudget that allows none", candidate(), []policyv1.PodDisruptionBudget{pdb("default", 0)}, disruption.BlockedPDB),
	Entry("a PodDisruptionBudget that allows one", candidate(), []policyv1.PodDisruptionBudget{pdb("default", 1)}, disruption.Blocker("")),
	Entry("a PodDisruptionBudget of another namespace", candidate(), []policyv1.PodDisruptionBudget{pdb("other", 0)}, disruption.Blocker("")),
	Entry("a DaemonSet pod with do-not-disrupt does not block", candidate(func(c *disruption.Candidate) {
		c.Pods[0].Annotations[disruption.DoNotDisruptAnnotation] = "true"
		c.Pods[0].OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "ds", Controller: ptr.To(true)}}
	}), nil, disruption.Blocker("")),
	Entry("a finished pod without a controller does not block", candidate(func(c *disruption.Candidate) {
		c.Pods[0].OwnerReferences = nil
		c.Pods[0].Status.Phase = corev1.PodSucceeded
	}), nil, disruption.Blocker("")),
)

func candidate(mutate ...func(*disruption.Candidate)) disruption.Candidate {
	claim := &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: "c", Annotations: map[string]string{}}, Status: v1.NodeClaimStatus{NodeName: "n"}}
	meta.SetStatusCondition(&claim.Status.Conditions, metav1.Condition{Type: v1.ConditionInitialized, Status: metav1.ConditionTrue, Reason: "Initialized"})
	c := disruption.Candidate{
		Claim: claim,
		Node:  &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Annotations: map[string]string{}}},
		Pods: []*corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "p", Labels: map[string]string{"app": "web"}, Annotations: map[string]string{},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web", Controller: ptr.To(true)}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning}}},
	}
	for _, m := range mutate {
		m(&c)
	}
	return c
}

func pdb(ns string, allowed int32) policyv1.PodDisruptionBudget {
	return policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("pdb-%d", allowed)},
		Spec:   policyv1.PodDisruptionBudgetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
		Status: policyv1.PodDisruptionBudgetStatus{DisruptionsAllowed: allowed}}
}
