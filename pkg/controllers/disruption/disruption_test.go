package disruption_test

import (
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/controllers/disruption"
	"github.com/backstop-sh/backstop/pkg/controllers/metrics"
	"github.com/backstop-sh/backstop/test"
)

func budgetPool(budgets ...v1.Budget) *v1.NodePool {
	return &v1.NodePool{Spec: v1.NodePoolSpec{Disruption: v1.Disruption{Budgets: budgets}}}
}

var _ = DescribeTable("disruption budgets",
	func(pool *v1.NodePool, reason v1.DisruptionReason, total int, at string, want int) {
		now, err := time.Parse(time.RFC3339, at)
		Expect(err).NotTo(HaveOccurred())
		got, err := disruption.Allowed(pool, reason, total, now)
		Expect(err).NotTo(HaveOccurred())
		Expect(got).To(Equal(want))
	},
	Entry("the default 10% of 25 nodes rounds up to 3", budgetPool(v1.Budget{Nodes: "10%"}), v1.DisruptionReasonEmpty, 25, "2026-11-21T12:00:00Z", 3),
	Entry("a count", budgetPool(v1.Budget{Nodes: "5"}), v1.DisruptionReasonEmpty, 25, "2026-11-21T12:00:00Z", 5),
	Entry("the least of several budgets", budgetPool(v1.Budget{Nodes: "50%"}, v1.Budget{Nodes: "2"}), v1.DisruptionReasonEmpty, 25, "2026-11-21T12:00:00Z", 2),
	Entry("a budget for other reasons does not apply", budgetPool(v1.Budget{Nodes: "0", Reasons: []v1.DisruptionReason{v1.DisruptionReasonDrifted}}, v1.Budget{Nodes: "4"}), v1.DisruptionReasonEmpty, 25, "2026-11-21T12:00:00Z", 4),
	Entry("a scheduled budget inside its window", budgetPool(v1.Budget{Nodes: "0", Schedule: ptr.To("0 9 * * *"), Duration: &metav1.Duration{Duration: 8 * time.Hour}}, v1.Budget{Nodes: "4"}), v1.DisruptionReasonEmpty, 25, "2026-11-21T12:00:00Z", 0),
	Entry("a scheduled budget outside its window", budgetPool(v1.Budget{Nodes: "0", Schedule: ptr.To("0 9 * * *"), Duration: &metav1.Duration{Duration: 8 * time.Hour}}, v1.Budget{Nodes: "4"}), v1.DisruptionReasonEmpty, 25, "2026-11-21T18:00:00Z", 4),
)

var _ = Describe("the disruption controller", func() {
	var (
		ctx  = context.Background()
		clk  *clocktesting.FakeClock
		ctrl *disruption.Controller
		reg  *prometheus.Registry
	)

	BeforeEach(func() {
		clk = clocktesting.NewFakeClock(time.Now())
		ctrl = disruption.New(env.Client, events.NewFakeRecorder(100), clk)
		reg = prometheus.NewRegistry()
		ctrl.Metrics = metrics.NewLifecycle(reg)
	})

	sample := func(name string, labels map[string]string) float64 {
		v, _ := test.Metric(reg, name, labels)
		return v
	}

	// pool makes a NodePool and n initialized NodeClaims with nodes.
	makePoolWith := func(name string, n int, disr v1.Disruption, expireAfter string, replicas *int64) []*v1.NodeClaim {
		pool := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.NodePoolSpec{Replicas: replicas, Disruption: disr, Template: v1.NodeClaimTemplate{Spec: v1.NodeClaimTemplateSpec{
			NodeClassRef: &v1.NodeClassReference{Group: awsv1.Group, Kind: "EC2NodeClass", Name: "default"},
		}}}}
		Expect(env.Client.Create(ctx, pool)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(env.Client.Delete(ctx, pool))).To(Succeed()) })
		var out []*v1.NodeClaim
		for i := 0; i < n; i++ {
			claim := &v1.NodeClaim{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", name, i), Labels: map[string]string{v1.NodePoolLabelKey: name}},
				Spec:       v1.NodeClaimSpec{NodeClassRef: pool.Spec.Template.Spec.NodeClassRef, ExpireAfter: v1.MustParseNillableDuration(expireAfter)},
			}
			Expect(env.Client.Create(ctx, claim)).To(Succeed())
			DeferCleanup(func() { Expect(client.IgnoreNotFound(env.Client.Delete(ctx, claim))).To(Succeed()) })
			claim.Status.NodeName = claim.Name
			meta.SetStatusCondition(&claim.Status.Conditions, metav1.Condition{Type: v1.ConditionInitialized, Status: metav1.ConditionTrue, Reason: "Initialized"})
			Expect(env.Client.Status().Update(ctx, claim)).To(Succeed())
			out = append(out, claim)
		}
		return out
	}
	makePool := func(name string, n int, disr v1.Disruption, expireAfter string) []*v1.NodeClaim {
		return makePoolWith(name, n, disr, expireAfter, nil)
	}
	exists := func(c *v1.NodeClaim) bool {
		return env.Client.Get(ctx, client.ObjectKeyFromObject(c), &v1.NodeClaim{}) == nil
	}
	podOn := func(node string) {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", GenerateName: "busy-"},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "c"}}}}
		Expect(env.Client.Create(ctx, pod)).To(Succeed())
		DeferCleanup(func() {
			Expect(client.IgnoreNotFound(env.Client.Delete(ctx, pod, client.GracePeriodSeconds(0)))).To(Succeed())
		})
	}

	It("deletes nodes empty for consolidateAfter, within the budget, and keeps busy ones", func() {
		claims := makePool("empty", 4, v1.Disruption{ConsolidateAfter: v1.MustParseNillableDuration("5m"),
			ConsolidationPolicy: v1.ConsolidationPolicyWhenEmpty, Budgets: []v1.Budget{{Nodes: "2"}}}, "720h")
		podOn(claims[3].Status.NodeName)
		Expect(ctrl.Disrupt(ctx)).To(Succeed())
		clk.Step(4 * time.Minute)
		Expect(ctrl.Disrupt(ctx)).To(Succeed())
		Expect(exists(claims[0]) && exists(claims[1]) && exists(claims[2])).To(BeTrue(), "not empty long enough yet")
		clk.Step(time.Minute)
		Expect(ctrl.Disrupt(ctx)).To(Succeed())
		deleted := 0
		for _, c := range claims[:3] {
			if !exists(c) {
				deleted++
			}
		}
		Expect(deleted).To(Equal(2), "three empty nodes, but the budget allows two")
		Expect(exists(claims[3])).To(BeTrue(), "a node with a pod stays")
		// What Karpenter's capacity dashboard reads.
		Expect(sample("karpenter_voluntary_disruption_eligible_nodes", map[string]string{"reason": "empty"})).To(Equal(3.0))
		Expect(sample("karpenter_voluntary_disruption_decisions_total", map[string]string{"decision": "delete", "reason": "empty", "consolidation_type": "empty"})).To(Equal(2.0))
		Expect(sample("karpenter_nodeclaims_disrupted_total", map[string]string{"nodepool": "empty", "reason": "empty"})).To(Equal(2.0))
	})

	It("leaves a static NodePool's nodes, empty or expired, to the static controller", func() {
		claims := makePoolWith("static", 2, v1.Disruption{ConsolidateAfter: v1.MustParseNillableDuration("0s"),
			ConsolidationPolicy: v1.ConsolidationPolicyWhenEmpty, Budgets: []v1.Budget{{Nodes: "100%"}}}, "1h", ptr.To[int64](2))
		Expect(ctrl.Disrupt(ctx)).To(Succeed())
		clk.SetTime(claims[0].CreationTimestamp.Add(2 * time.Hour))
		Expect(ctrl.Disrupt(ctx)).To(Succeed())
		Expect(exists(claims[0]) && exists(claims[1])).To(BeTrue())
	})

	It("never consolidates with consolidateAfter: Never", func() {
		claims := makePool("never", 1, v1.Disruption{ConsolidateAfter: v1.MustParseNillableDuration("Never")}, "Never")
		Expect(ctrl.Disrupt(ctx)).To(Succeed())
		clk.Step(1000 * time.Hour)
		Expect(ctrl.Disrupt(ctx)).To(Succeed())
		Expect(exists(claims[0])).To(BeTrue())
	})

	// hold keeps a deleted NodeClaim readable until the spec ends.
	hold := func(c *v1.NodeClaim) {
		Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(c), c)).To(Succeed())
		c.Finalizers = append(c.Finalizers, "test.backstop.sh/hold")
		Expect(env.Client.Update(ctx, c)).To(Succeed())
		DeferCleanup(func() {
			if env.Client.Get(ctx, client.ObjectKeyFromObject(c), c) == nil {
				c.Finalizers = nil
				Expect(client.IgnoreNotFound(env.Client.Update(ctx, c))).To(Succeed())
			}
		})
	}
	deletedFor := func(c *v1.NodeClaim) string {
		got := &v1.NodeClaim{}
		Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(c), got)).To(Succeed())
		Expect(got.DeletionTimestamp).NotTo(BeNil())
		cond := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionDisruptionReason)
		if cond == nil || cond.Status != metav1.ConditionTrue {
			return ""
		}
		return cond.Reason + ": " + cond.Message
	}

	It("deletes NodeClaims older than expireAfter, busy or not, and says so in their DisruptionReason", func() {
		claims := makePool("expiring", 1, v1.Disruption{ConsolidateAfter: v1.MustParseNillableDuration("Never")}, "1h")
		hold(claims[0])
		podOn(claims[0].Status.NodeName)
		Expect(ctrl.Disrupt(ctx)).To(Succeed())
		Expect(exists(claims[0])).To(BeTrue())
		// An hour after the NodeClaim's creation by the API server's clock,
		// which may be seconds after this fake clock started on a busy machine.
		clk.SetTime(claims[0].CreationTimestamp.Add(time.Hour))
		Expect(ctrl.Disrupt(ctx)).To(Succeed())
		Expect(deletedFor(claims[0])).To(Equal("Expired: NodeClaim is older than expireAfter 1h"))
	})

	It("removes a DisruptionReason left on a NodeClaim it did not delete, once a minute old", func() {
		claims := makePool("interrupted", 2, v1.Disruption{ConsolidateAfter: v1.MustParseNillableDuration("Never")}, "720h")
		for i, age := range []time.Duration{time.Minute, 59 * time.Second} {
			meta.SetStatusCondition(&claims[i].Status.Conditions, metav1.Condition{Type: v1.ConditionDisruptionReason, Status: metav1.ConditionTrue,
				Reason: "Empty", Message: "a crash came between the mark and the delete", LastTransitionTime: metav1.NewTime(clk.Now().Add(-age))})
			Expect(env.Client.Status().Update(ctx, claims[i])).To(Succeed())
		}
		Expect(ctrl.Disrupt(ctx)).To(Succeed())
		marked := func(c *v1.NodeClaim) bool {
			Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(c), c)).To(Succeed())
			return meta.FindStatusCondition(c.Status.Conditions, v1.ConditionDisruptionReason) != nil
		}
		Expect(marked(claims[0])).To(BeFalse(), "a minute old: left over")
		Expect(marked(claims[1])).To(BeTrue(), "younger: a disruption may be deleting it now")
		Expect(exists(claims[0]) && exists(claims[1])).To(BeTrue())
	})

	It("says Empty in the DisruptionReason of an empty node it deletes", func() {
		claims := makePool("emptied", 1, v1.Disruption{ConsolidateAfter: v1.MustParseNillableDuration("0s"),
			ConsolidationPolicy: v1.ConsolidationPolicyWhenEmpty, Budgets: []v1.Budget{{Nodes: "100%"}}}, "720h")
		hold(claims[0])
		Expect(ctrl.Disrupt(ctx)).To(Succeed())
		Expect(deletedFor(claims[0])).To(Equal("Empty: Node has been empty for consolidateAfter 0s"))
	})
	It("does not remove an empty node that pending pods are planned onto", func() {
		claims := makePool("awaited", 2, v1.Disruption{ConsolidateAfter: v1.MustParseNillableDuration("0s"),
			ConsolidationPolicy: v1.ConsolidationPolicyWhenEmpty, Budgets: []v1.Budget{{Nodes: "100%"}}}, "720h")
		ctrl.Nominations = nominated{claims[0].Name: true}
		Expect(ctrl.Disrupt(ctx)).To(Succeed())
		Expect(exists(claims[0])).To(BeTrue(), "a pod is on its way there")
		Expect(exists(claims[1])).To(BeFalse())
	})
})

// nominated stands in for the provisioner's nominations.
type nominated map[string]bool

func (n nominated) Nominated(_ context.Context, claim string) bool { return n[claim] }
