package fallback_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/test"
	"github.com/backstop-sh/backstop/test/ec2sim"
)

var ctx = context.Background()

// fleetCall is one recorded CreateFleet and what it asked for.
type fleetCall struct {
	capacityType string
	at           time.Time
}

func fleetCalls() []fleetCall {
	var out []fleetCall
	for _, r := range sim.Requests() {
		if r.Action == "CreateFleet" && r.Error == "" {
			out = append(out, fleetCall{capacityType: r.Params["TargetCapacitySpecification.DefaultTargetCapacityType"], at: r.Time})
		}
	}
	return out
}

func nodeClaims() []v1.NodeClaim {
	var list v1.NodeClaimList
	Expect(env.Client.List(ctx, &list)).To(Succeed())
	return list.Items
}

// launchedClaims lists the launched NodeClaims as pool/capacity-type.
func launchedClaims() []string {
	var out []string
	for _, c := range nodeClaims() {
		if c.Status.ProviderID != "" {
			out = append(out, c.Labels[v1.NodePoolLabelKey]+"/"+c.Labels[v1.CapacityTypeLabelKey])
		}
	}
	return out
}

func counter(name string, labels map[string]string) float64 {
	families, err := crmetrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	total := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if matchLabels(m, labels) {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

func matchLabels(m *dto.Metric, want map[string]string) bool {
	got := map[string]string{}
	for _, l := range m.GetLabel() {
		got[l.GetName()] = l.GetValue()
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

func events(ns, reason string) []eventsv1.Event {
	var list eventsv1.EventList
	Expect(env.Client.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}

// pendingPods creates pods that kube-scheduler marked Unschedulable.
func pendingPods(ns string, n int, cpu string) {
	for i := 0; i < n; i++ {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("app-%d", i)},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app", Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse("256Mi")},
			}}}},
		}
		Expect(env.Client.Create(ctx, pod)).To(Succeed())
		pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, LastTransitionTime: metav1.Now()}}
		Expect(env.Client.Status().Update(ctx, pod)).To(Succeed())
	}
}

var _ = Describe("Spot first, On-Demand when Spot runs out", Ordered, func() {
	var ns string

	BeforeAll(func() {
		startBackstop()
		objs, err := test.ReadManifests("examples.yaml")
		Expect(err).NotTo(HaveOccurred())
		for _, o := range objs {
			Expect(env.Client.Create(ctx, o)).To(Succeed())
		}
		Eventually(func(g Gomega) {
			for _, c := range mustGetClass().Status.Conditions {
				if c.Type == "Ready" {
					g.Expect(string(c.Status)).To(Equal("True"))
					return
				}
			}
			g.Expect("Ready condition").To(Equal("set"))
		}, 10*time.Second).Should(Succeed(), "the README's EC2NodeClass resolves against the simulator")
		// The scenarios count fleet calls; none should be refused while IAM
		// propagates the class's new instance profile.
		Eventually(sim.InstanceProfilesVisible, 10*time.Second).Should(BeTrue())
	})

	BeforeEach(func() {
		// A clean slate: no pods, claims, faults or marks left from the last
		// scenario. Its pods go first: while they are pending, Backstop
		// rightly plans capacity for them again.
		if ns != "" {
			Expect(env.Client.DeleteAllOf(ctx, &corev1.Pod{}, client.InNamespace(ns), client.GracePeriodSeconds(0))).To(Succeed())
		}
		sim.SetFaults(ec2sim.Faults{})
		time.Sleep(ttl) // unavailability marks from the previous scenario expire (a real-clock suite)
		// By now a batch that read the pods before they went is over; what
		// it made goes with the rest.
		Eventually(func() []v1.NodeClaim {
			for _, c := range nodeClaims() {
				Expect(client.IgnoreNotFound(env.Client.Delete(ctx, &c))).To(Succeed())
			}
			return nodeClaims()
		}, 10*time.Second, 200*time.Millisecond).Should(BeEmpty())
		sim.ResetRequests()
		nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "fallback-"}}
		Expect(env.Client.Create(ctx, nsObj)).To(Succeed())
		ns = nsObj.Name
	})

	It("moves to another Spot type of the same pool when one type has no Spot capacity", func() {
		sim.SetFaults(ec2sim.Faults{Capacity: []ec2sim.CapacityRule{{InstanceType: "c5.large", CapacityType: "spot", Max: 0}}})
		pendingPods(ns, 3, "250m")
		Eventually(launchedClaims, 10*time.Second).Should(Equal([]string{"batch/spot"}))
		claim := nodeClaims()[0]
		Expect(claim.Labels[corev1.LabelInstanceTypeStable]).NotTo(Equal("c5.large"))
		var codes []string
		for _, r := range sim.Requests() {
			if r.Action == "CreateFleet" {
				codes = append(codes, r.Params["TargetCapacitySpecification.DefaultTargetCapacityType"])
			}
		}
		Expect(codes).To(Equal([]string{"spot"}), "one fleet call: EC2 itself moved past c5.large")
	})

	It("falls back to the weight-10 On-Demand pool when Spot has no capacity anywhere, and says why", func() {
		sim.SetFaults(ec2sim.Faults{Capacity: []ec2sim.CapacityRule{{CapacityType: "spot", Max: 0}}})
		before := counter("backstop_fallback_total", map[string]string{"from_nodepool": "batch", "to_nodepool": "batch-fallback", "reason": "InsufficientInstanceCapacity"})
		pendingPods(ns, 3, "250m")
		Eventually(launchedClaims, 15*time.Second).Should(Equal([]string{"batch-fallback/on-demand"}))

		// Under load the pods may land in two batches, so there may be a Spot
		// call per batch; what matters is that each failed once and that
		// On-Demand came next.
		var calls []string
		var spotFailed, onDemandCalled time.Time
		for _, r := range sim.Requests() {
			if r.Action != "CreateFleet" {
				continue
			}
			ct := r.Params["TargetCapacitySpecification.DefaultTargetCapacityType"]
			calls = append(calls, ct)
			if ct == "spot" && onDemandCalled.IsZero() {
				spotFailed = r.Time
			} else if ct == "on-demand" && onDemandCalled.IsZero() {
				onDemandCalled = r.Time
			}
		}
		Expect(calls).To(ContainElement("spot"))
		Expect(calls[len(calls)-1]).To(Equal("on-demand"))
		Expect(strings.Join(calls, ",")).To(MatchRegexp(`^(spot,)+on-demand(,on-demand)*$`), "Spot first, then only On-Demand")
		took := onDemandCalled.Sub(spotFailed)
		AddReportEntry("Spot failure to On-Demand CreateFleet", took.String())
		GinkgoWriter.Printf("Spot failure to On-Demand CreateFleet: %s (batch idle window 300ms)\n", took)
		Expect(took).To(BeNumerically("<", 300*time.Millisecond+time.Second), "within one idle window plus 1s")

		Eventually(func() int { return len(events(ns, "Fallback")) }).Should(Equal(3), "each pod is told")
		note := events(ns, "Fallback")[0].Note
		Expect(note).To(ContainSubstring("NodePool batch could not launch (InsufficientInstanceCapacity)"))
		Expect(note).To(ContainSubstring("planned on NodePool batch-fallback"))
		Expect(counter("backstop_fallback_total", map[string]string{"from_nodepool": "batch", "to_nodepool": "batch-fallback", "reason": "InsufficientInstanceCapacity"})).To(Equal(before + 3))
		Expect(counter("karpenter_cloudprovider_instance_launch_failures_total", map[string]string{"capacity_type": "spot", "reason": "InsufficientInstanceCapacity"})).To(BeNumerically(">=", 1))
	})

	It("goes to On-Demand on the very next plan after MaxSpotInstanceCountExceeded, with one failed Spot call", func() {
		sim.SetFaults(ec2sim.Faults{SpotVCPUQuota: ptr.To[int64](0)})
		pendingPods(ns, 1, "250m")
		Eventually(launchedClaims, 15*time.Second).Should(Equal([]string{"batch-fallback/on-demand"}))
		spot := 0
		for _, c := range sim.Requests() {
			if c.Action == "CreateFleet" && c.Params["TargetCapacitySpecification.DefaultTargetCapacityType"] == "spot" {
				spot++
			}
		}
		Expect(spot).To(Equal(1))
	})

	It("falls back when the Spot service-linked role is missing, and prints the fix on the NodeClaim", func() {
		sim.SetFaults(ec2sim.Faults{NoSpotServiceLinkedRole: true})
		pendingPods(ns, 1, "250m")
		Eventually(launchedClaims, 15*time.Second).Should(Equal([]string{"batch-fallback/on-demand"}))
		Eventually(func() bool {
			for _, e := range events("", "InsufficientCapacityError") {
				if strings.Contains(e.Note, "aws iam create-service-linked-role --aws-service-name spot.amazonaws.com") {
					return true
				}
			}
			return false
		}).Should(BeTrue())
		pool := &v1.NodePool{}
		Expect(env.Client.Get(ctx, client.ObjectKey{Name: "batch"}, pool)).To(Succeed())
		Expect(pool.Status.Conditions).To(ContainElement(And(
			HaveField("Type", "SpotAvailable"), HaveField("Status", metav1.ConditionFalse),
			HaveField("Reason", "AuthFailureServiceLinkedRoleCreationNotPermitted"),
			HaveField("Message", ContainSubstring("aws iam create-service-linked-role --aws-service-name spot.amazonaws.com")))),
			"the NodePool says why Spot is not used and how to fix it")
	})

	It("tries Spot again once the marks expire", func() {
		sim.SetFaults(ec2sim.Faults{Capacity: []ec2sim.CapacityRule{{CapacityType: "spot", Max: 0}}})
		pendingPods(ns, 1, "250m")
		Eventually(func() []string {
			var out []string
			for _, c := range nodeClaims() {
				if c.Status.ProviderID != "" {
					out = append(out, c.Labels[v1.CapacityTypeLabelKey])
				}
			}
			return out
		}, 15*time.Second).Should(Equal([]string{"on-demand"}))
		Expect(fleetCalls()[0].capacityType).To(Equal("spot"))
		// Capacity comes back; once the marks expire, Spot is first again.
		sim.SetFaults(ec2sim.Faults{})
		// The first pod goes first, so only the new one asks for capacity
		// (it would otherwise be planned again, and the new pod onto its
		// NodeClaim, before the requests are reset).
		Expect(env.Client.DeleteAllOf(ctx, &corev1.Pod{}, client.InNamespace(ns), client.GracePeriodSeconds(0))).To(Succeed())
		for _, c := range nodeClaims() {
			Expect(client.IgnoreNotFound(env.Client.Delete(ctx, &c))).To(Succeed())
		}
		Eventually(nodeClaims).Should(BeEmpty())
		time.Sleep(ttl)
		other := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "fallback-again-"}}
		Expect(env.Client.Create(ctx, other)).To(Succeed())
		sim.ResetRequests()
		pendingPods(other.Name, 1, "250m")
		Eventually(func() []fleetCall { return fleetCalls() }, 10*time.Second).ShouldNot(BeEmpty())
		Expect(fleetCalls()[0].capacityType).To(Equal("spot"))
	})

	It("retries throttled calls and still launches", func() {
		sim.SetFaults(ec2sim.Faults{ThrottleNext: 2})
		pendingPods(ns, 2, "250m")
		Eventually(func() int {
			n := 0
			for _, c := range nodeClaims() {
				if c.Status.ProviderID != "" {
					n++
				}
			}
			return n
		}, 15*time.Second).Should(Equal(1))
		throttled := 0
		for _, r := range sim.Requests() {
			if r.Error == "RequestLimitExceeded" {
				throttled++
			}
		}
		Expect(throttled).To(BeNumerically(">", 0), "%v", sim.Requests())
	})

	It("launches into a capacity reservation first, through a pool of reservations only, and what it has no room for goes to Spot", func() {
		reservation, err := sim.Reserve(ec2sim.CapacityReservationConfig{InstanceType: "c5.large", Zone: "ap-northeast-2a", Count: 2,
			MatchCriteria: "targeted", Tags: map[string]string{"team": "batch"}})
		Expect(err).NotTo(HaveOccurred())
		class := mustGetClass()
		patch := client.MergeFrom(class.DeepCopy())
		class.Spec.CapacityReservationSelectorTerms = []awsv1.CapacityReservationSelectorTerm{{Tags: map[string]string{"team": "batch"}}}
		Expect(env.Client.Patch(ctx, class, patch)).To(Succeed())
		// Tried before batch: the reservations' pool weighs more.
		batch := &v1.NodePool{}
		Expect(env.Client.Get(ctx, client.ObjectKey{Name: "batch"}, batch)).To(Succeed())
		batchPatch := client.MergeFrom(batch.DeepCopy())
		batch.Spec.Weight = ptr.To[int32](50)
		Expect(env.Client.Patch(ctx, batch, batchPatch)).To(Succeed())
		pool := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "reserved"}, Spec: v1.NodePoolSpec{Weight: ptr.To[int32](100), Template: v1.NodeClaimTemplate{Spec: v1.NodeClaimTemplateSpec{
			NodeClassRef: &v1.NodeClassReference{Group: "karpenter.k8s.aws", Kind: "EC2NodeClass", Name: "default"},
			Requirements: []v1.NodeSelectorRequirementWithMinValues{{Key: v1.CapacityTypeLabelKey, Operator: v1.OpIn, Values: []string{"reserved"}}},
		}}}}
		Expect(env.Client.Create(ctx, pool)).To(Succeed())
		DeferCleanup(func() {
			Expect(env.Client.Delete(ctx, pool)).To(Succeed())
			batch := &v1.NodePool{}
			Expect(env.Client.Get(ctx, client.ObjectKey{Name: "batch"}, batch)).To(Succeed())
			batchPatch := client.MergeFrom(batch.DeepCopy())
			batch.Spec.Weight = ptr.To[int32](100)
			Expect(env.Client.Patch(ctx, batch, batchPatch)).To(Succeed())
			class := mustGetClass()
			patch := client.MergeFrom(class.DeepCopy())
			class.Spec.CapacityReservationSelectorTerms = nil
			Expect(env.Client.Patch(ctx, class, patch)).To(Succeed())
		})
		Eventually(func() []awsv1.CapacityReservation { return mustGetClass().Status.CapacityReservations }, 10*time.Second).Should(ConsistOf(
			HaveField("ID", reservation)))
		Eventually(func() bool {
			got := &v1.NodePool{}
			Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(pool), got)).To(Succeed())
			for _, c := range got.Status.Conditions {
				if c.Type == "Ready" {
					return c.Status == metav1.ConditionTrue
				}
			}
			return false
		}, 10*time.Second).Should(BeTrue())

		// One pod per node: each c5.large holds one.
		pendingPods(ns, 3, "1500m")
		Eventually(launchedClaims, 15*time.Second).Should(ConsistOf("reserved/reserved", "reserved/reserved", "batch/spot"))
		for _, c := range nodeClaims() {
			if c.Labels[v1.CapacityTypeLabelKey] == "reserved" {
				Expect(c.Labels).To(HaveKeyWithValue("karpenter.k8s.aws/capacity-reservation-id", reservation))
				Expect(c.Labels).To(HaveKeyWithValue(corev1.LabelTopologyZone, "ap-northeast-2a"))
			}
		}
		inReservation := 0
		for _, inst := range sim.Instances() {
			if inst.CapacityReservationID == reservation && inst.State == "running" {
				inReservation++
			}
		}
		Expect(inReservation).To(Equal(2))
		for _, r := range sim.Requests() {
			if r.Action == "CreateFleet" {
				Expect(r.Error).To(BeEmpty(), "no launch into the full reservation was tried")
			}
		}
	})

	It("does not let a NodeClaim that cannot launch hold up the others, and gives it up after the launch timeout", func() {
		poisoned := &v1.NodeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: "poisoned", Labels: map[string]string{v1.NodePoolLabelKey: "batch"}},
			Spec:       v1.NodeClaimSpec{NodeClassRef: &v1.NodeClassReference{Group: "karpenter.k8s.aws", Kind: "EC2NodeClass", Name: "missing"}},
		}
		Expect(env.Client.Create(ctx, poisoned)).To(Succeed())
		pendingPods(ns, 2, "250m")
		Eventually(func() int {
			n := 0
			for _, c := range nodeClaims() {
				if c.Status.ProviderID != "" {
					n++
				}
			}
			return n
		}, 10*time.Second).Should(Equal(1))
		got := &v1.NodeClaim{}
		Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(poisoned), got)).To(Succeed())
		Expect(got.Status.Conditions).To(ContainElement(And(
			HaveField("Type", v1.ConditionLaunched), HaveField("Reason", "NodeClassNotFound"), HaveField("Message", "EC2NodeClass missing does not exist"))))
		Eventually(func() bool {
			return client.IgnoreNotFound(env.Client.Get(ctx, client.ObjectKeyFromObject(poisoned), got)) == nil && env.Client.Get(ctx, client.ObjectKeyFromObject(poisoned), got) != nil
		}, 2*time.Minute, time.Second).Should(BeTrue(), "given up after the 10s launch timeout")
		Expect(events("", "LaunchTimeout")).NotTo(BeEmpty())
	})
})

func mustGetClass() *awsv1.EC2NodeClass {
	nc := &awsv1.EC2NodeClass{}
	Expect(env.Client.Get(ctx, client.ObjectKey{Name: "default"}, nc)).To(Succeed())
	return nc
}
