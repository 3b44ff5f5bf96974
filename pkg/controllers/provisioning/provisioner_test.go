package provisioning_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider"
	"github.com/backstop-sh/backstop/pkg/cloudprovider/fake"
	"github.com/backstop-sh/backstop/pkg/controllers/provisioning"
	"github.com/backstop-sh/backstop/pkg/scheduling"
	"github.com/backstop-sh/backstop/test"
)

func instanceType(name string, cpu int64) *scheduling.InstanceType {
	it := &scheduling.InstanceType{
		Name:         name,
		Requirements: scheduling.NewRequirements(scheduling.MustRequirement(corev1.LabelInstanceTypeStable, v1.OpIn, name)),
		Capacity:     scheduling.Resources{CPU: cpu * 1000, Memory: cpu * 4 << 30, Pods: 50},
	}
	for _, z := range []string{"zone-a", "zone-b"} {
		it.Offerings = append(it.Offerings, scheduling.Offering{Zone: z, CapacityType: v1.CapacityTypeSpot, Price: float64(cpu) / 10, Available: true})
	}
	return it
}

func histogram(reg *prometheus.Registry, name string) *dto.Histogram {
	families, err := reg.Gather()
	Expect(err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetHistogram()
		}
	}
	return &dto.Histogram{}
}

func unschedulablePod(ns, name, cpu string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)},
		}}}},
	}
}

// markUnschedulable does what kube-scheduler does when no node fits.
func markUnschedulable(ctx context.Context, c client.Client, pod *corev1.Pod) {
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, LastTransitionTime: metav1.Now()}}
	Expect(c.Status().Update(ctx, pod)).To(Succeed())
}

var _ = Describe("the provisioner", Ordered, func() {
	var (
		ctx    context.Context
		cancel context.CancelFunc
		clk    *clocktesting.FakeClock
		reg    *prometheus.Registry
		ns     string
		mgr    ctrl.Manager
		p      *provisioning.Provisioner
	)

	BeforeAll(func() {
		ctx, cancel = context.WithCancel(context.Background())
		DeferCleanup(cancel)
		var err error
		mgr, err = ctrl.NewManager(env.Config, ctrl.Options{Scheme: test.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
		Expect(err).NotTo(HaveOccurred())
		clk = clocktesting.NewFakeClock(time.Now())
		reg = prometheus.NewRegistry()
		// The fake cloud offers two sizes in two zones.
		cloud := fake.New(clk)
		cloud.Types = []*scheduling.InstanceType{instanceType("small", 2), instanceType("large", 16)}
		p = provisioning.New(mgr.GetClient(), mgr.GetEventRecorder("karpenter"), cloud,
			clk, provisioning.NewMetrics(reg), provisioning.Options{BatchIdleDuration: time.Second, BatchMaxDuration: 10 * time.Second, Process: "this-process"})
		Expect(p.Register(mgr)).To(Succeed())
		go func() {
			defer GinkgoRecover()
			Expect(mgr.Start(ctx)).To(Succeed())
		}()

		nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "provisioning-"}}
		Expect(env.Client.Create(ctx, nsObj)).To(Succeed())
		ns = nsObj.Name
		pool := &v1.NodePool{
			ObjectMeta: metav1.ObjectMeta{Name: "batch"},
			Spec: v1.NodePoolSpec{Weight: ptr.To[int32](100), Template: v1.NodeClaimTemplate{
				ObjectMeta: v1.TemplateMetadata{Labels: map[string]string{"team": "data"}},
				Spec: v1.NodeClaimTemplateSpec{
					NodeClassRef: &v1.NodeClassReference{Group: awsv1.Group, Kind: "EC2NodeClass", Name: "default"},
					Requirements: []v1.NodeSelectorRequirementWithMinValues{{Key: v1.CapacityTypeLabelKey, Operator: v1.OpIn, Values: []string{v1.CapacityTypeSpot}}},
				},
			}},
		}
		Expect(env.Client.Create(ctx, pool)).To(Succeed())
	})

	// settle waits until the provisioner's cache sees n provisionable pods in the
	// namespace and its batch window is open, so a clock step closes it.
	settle := func(n int) {
		Eventually(func() int {
			var pods corev1.PodList
			Expect(mgr.GetClient().List(ctx, &pods, client.InNamespace(ns))).To(Succeed())
			count := 0
			for i := range pods.Items {
				if provisioning.IsProvisionable(&pods.Items[i]) {
					count++
				}
			}
			return count
		}).Should(Equal(n))
		// Two timers of the window, and perhaps the re-check of pods waiting on NodeClaims.
		Eventually(clk.Waiters).Should(BeNumerically(">=", 2), "the batch window should be open")
	}

	// notes lists the notes of the events with reason about pod (any pod when "").
	notes := func(reason, pod string) []string {
		var evs eventsv1.EventList
		Expect(env.Client.List(ctx, &evs, client.InNamespace(ns))).To(Succeed())
		var out []string
		for _, e := range evs.Items {
			if e.Reason == reason && (pod == "" || e.Regarding.Name == pod) {
				out = append(out, e.Note)
			}
		}
		return out
	}

	nodeClaims := func() []v1.NodeClaim {
		var list v1.NodeClaimList
		Expect(env.Client.List(ctx, &list)).To(Succeed())
		return list.Items
	}

	// join makes a Node with the given allocatable CPU (4 GiB a CPU, 50
	// pods) and waits until the provisioner's cache has it.
	join := func(node *corev1.Node, cpu string) {
		Expect(env.Client.Create(ctx, node)).To(Succeed())
		q := resource.MustParse(cpu)
		node.Status.Allocatable = corev1.ResourceList{corev1.ResourceCPU: q,
			corev1.ResourceMemory: *resource.NewQuantity(q.Value()*4<<30, resource.BinarySI), corev1.ResourcePods: resource.MustParse("50")}
		node.Status.Capacity = node.Status.Allocatable
		Expect(env.Client.Status().Update(ctx, node)).To(Succeed())
		Eventually(func() error { return mgr.GetClient().Get(ctx, client.ObjectKeyFromObject(node), &corev1.Node{}) }).Should(Succeed())
	}

	It("plans pods that become unschedulable together in one batch and creates their NodeClaim", func() {
		for i := 0; i < 5; i++ {
			pod := unschedulablePod(ns, fmt.Sprintf("web-%d", i), "500m")
			Expect(env.Client.Create(ctx, pod)).To(Succeed())
			markUnschedulable(ctx, env.Client, pod)
		}
		settle(5)
		Expect(nodeClaims()).To(BeEmpty(), "nothing before the window closes")
		clk.Step(time.Second)

		Eventually(nodeClaims).Should(HaveLen(1))
		h := histogram(reg, "backstop_provisioner_batch_pods")
		Expect(h.GetSampleCount()).To(Equal(uint64(1)), "one batch")
		Expect(h.GetSampleSum()).To(Equal(5.0), "holding all five pods")

		claim := nodeClaims()[0]
		Expect(claim.Labels).To(HaveKeyWithValue(v1.NodePoolLabelKey, "batch"))
		Expect(claim.Labels).To(HaveKeyWithValue("team", "data"))
		Expect(claim.Spec.NodeClassRef.Name).To(Equal("default"))
		Expect(claim.Annotations).To(HaveKeyWithValue(cloudprovider.CreatedByAnnotation, "this-process"), "so a launcher of another process asks the cloud first")
		Expect(claim.Spec.ExpireAfter.String()).To(Equal("720h"), "the pool's default")
		Expect(claim.Spec.Requirements).To(ContainElement(v1.NodeSelectorRequirementWithMinValues{
			Key: corev1.LabelInstanceTypeStable, Operator: v1.OpIn, Values: []string{"large"}}), "2.5 CPU does not fit the 2-CPU type")
		Expect(claim.Spec.Requirements).To(ContainElement(v1.NodeSelectorRequirementWithMinValues{
			Key: v1.CapacityTypeLabelKey, Operator: v1.OpIn, Values: []string{v1.CapacityTypeSpot}}))
		cpu := claim.Spec.Resources.Requests[corev1.ResourceCPU]
		Expect(cpu.String()).To(Equal("2500m"))

		Eventually(func() []string { return notes("Nominated", "") }).Should(And(
			HaveLen(5), HaveEach("Pod should schedule on: nodeclaim/"+claim.Name)), "every pod is told where it will go")
	})

	It("does not plan pods already nominated to an in-flight NodeClaim again", func() {
		pod := &corev1.Pod{}
		Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web-0"}, pod)).To(Succeed())
		pod.Labels = map[string]string{"touched": "yes"}
		Expect(env.Client.Update(ctx, pod)).To(Succeed())
		settle(5)
		clk.Step(time.Second)
		Eventually(func() uint64 {
			return histogram(reg, "karpenter_provisioner_scheduling_duration_seconds").GetSampleCount()
		}).Should(Equal(uint64(1)))
		Consistently(nodeClaims, time.Second).Should(HaveLen(1), "no second NodeClaim for the same pods")
	})

	It("says why a pod cannot be placed, per NodePool", func() {
		pod := unschedulablePod(ns, "huge", "64")
		Expect(env.Client.Create(ctx, pod)).To(Succeed())
		markUnschedulable(ctx, env.Client, pod)
		settle(6)
		Eventually(func() []string {
			clk.Step(time.Second)
			return notes("FailedScheduling", "huge")
		}).Should(ContainElement("Failed to schedule pod: batch: no instance type has enough resources: cpu 64 > 16"))
		Expect(nodeClaims()).To(HaveLen(1))
	})

	It("counts on a node that is still initializing instead of planning another", func() {
		join(&corev1.Node{
			// Registered, not ready yet.
			ObjectMeta: metav1.ObjectMeta{Name: "initializing", Labels: map[string]string{v1.NodePoolLabelKey: "batch", corev1.LabelHostname: "initializing",
				v1.RegisteredLabelKey: "true"}},
			Spec: corev1.NodeSpec{Taints: []corev1.Taint{
				{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoSchedule},
			}},
		}, "4")

		pod := unschedulablePod(ns, "fits-on-new-node", "1")
		Expect(env.Client.Create(ctx, pod)).To(Succeed())
		markUnschedulable(ctx, env.Client, pod)
		settle(7)
		Eventually(func() []string {
			clk.Step(time.Second)
			return notes("Nominated", "fits-on-new-node")
		}).Should(ContainElement("Pod should schedule on: node/initializing"))
		Expect(nodeClaims()).To(HaveLen(1), "no NodeClaim for a pod an initializing node can take")
	})

	It("counts a node that joined before its NodeClaim's record of the launch reached the cache once, as that NodeClaim", func() {
		// The first spec's NodeClaim (large, 2.5 of 16 CPU planned) is
		// launched; its node joins before the launch's status write is in
		// the cache, as a fast-booting instance can.
		claim := nodeClaims()[0]
		Expect(claim.Status.ProviderID).To(BeEmpty())
		p.Launched(&claim, "fake:///joined-early")
		join(&corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: "joined-early", Labels: map[string]string{v1.NodePoolLabelKey: "batch", corev1.LabelHostname: "joined-early"}},
			Spec:       corev1.NodeSpec{ProviderID: "fake:///joined-early", Taints: []corev1.Taint{v1.UnregisteredNoExecuteTaint}},
		}, "16")

		// 14 CPU: more than the NodeClaim has left, less than the node has.
		pod := unschedulablePod(ns, "needs-a-node", "14")
		Expect(env.Client.Create(ctx, pod)).To(Succeed())
		markUnschedulable(ctx, env.Client, pod)
		settle(8)
		Eventually(func() []v1.NodeClaim {
			clk.Step(time.Second)
			return nodeClaims()
		}).Should(HaveLen(2), "planned onto the node's room, which its NodeClaim already offers")
		Eventually(func() []string { return notes("Nominated", "needs-a-node") }).Should(ConsistOf(HavePrefix("Pod should schedule on: nodeclaim/")))
	})
	It("backs a pod off when kube-scheduler does not bind it onto the node planned for it, and makes no other NodeClaim meanwhile", func() {
		disagreements := func() float64 {
			families, err := reg.Gather()
			Expect(err).NotTo(HaveOccurred())
			for _, f := range families {
				if f.GetName() == "backstop_scheduler_disagreements_total" {
					return f.GetMetric()[0].GetCounter().GetValue()
				}
			}
			return 0
		}
		pod := unschedulablePod(ns, "stubborn", "14") // more than any node or NodeClaim so far has room for
		Expect(env.Client.Create(ctx, pod)).To(Succeed())
		pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
			Message: "0/4 nodes are available: 1 node(s) had volume node affinity conflict.", LastTransitionTime: metav1.Now()}}
		Expect(env.Client.Status().Update(ctx, pod)).To(Succeed())
		settle(9)
		Eventually(func() []string {
			clk.Step(time.Second)
			return notes("Nominated", "stubborn")
		}).Should(ContainElement(HavePrefix("Pod should schedule on: nodeclaim/")))
		name := strings.TrimPrefix(notes("Nominated", "stubborn")[0], "Pod should schedule on: nodeclaim/")

		// Its node comes up and initializes, with room for the pod; kube-scheduler still will not bind it.
		join(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "stubborn-node", Labels: map[string]string{v1.NodePoolLabelKey: "batch"}}}, "16")
		claim := &v1.NodeClaim{}
		Expect(env.Client.Get(ctx, client.ObjectKey{Name: name}, claim)).To(Succeed())
		claim.Status.NodeName = "stubborn-node"
		for _, t := range []string{v1.ConditionLaunched, v1.ConditionRegistered, v1.ConditionInitialized} {
			meta.SetStatusCondition(&claim.Status.Conditions, metav1.Condition{Type: t, Status: metav1.ConditionTrue, Reason: t, LastTransitionTime: metav1.NewTime(clk.Now())})
		}
		Expect(env.Client.Status().Update(ctx, claim)).To(Succeed())
		Eventually(func() bool {
			c := &v1.NodeClaim{}
			Expect(mgr.GetClient().Get(ctx, client.ObjectKey{Name: name}, c)).To(Succeed())
			return meta.IsStatusConditionTrue(c.Status.Conditions, v1.ConditionInitialized)
		}).Should(BeTrue())
		claims := len(nodeClaims())

		// kube-scheduler gets its grace; then the disagreement is recorded.
		clk.Step(10 * time.Second)
		Eventually(func() float64 {
			clk.Step(time.Second)
			return disagreements()
		}).Should(Equal(1.0))
		Eventually(func() []string { return notes("SchedulerDisagreed", "stubborn") }).Should(ContainElement(And(
			ContainSubstring("nodeclaim/"+name), ContainSubstring("volume node affinity conflict"), ContainSubstring("planning it again in 10s"))))

		// Within the back-off, batches run and leave the pod alone.
		pod = &corev1.Pod{}
		Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "stubborn"}, pod)).To(Succeed())
		pod.Labels = map[string]string{"touched": "again"}
		Expect(env.Client.Update(ctx, pod)).To(Succeed())
		for range 4 {
			clk.Step(time.Second)
			Consistently(func() int { return len(nodeClaims()) }, 300*time.Millisecond).Should(Equal(claims), "no NodeClaim within the back-off")
		}
		Expect(notes("Nominated", "stubborn")).NotTo(ContainElement("Pod should schedule on: node/stubborn-node"))
		// After it, the pod is planned again: onto the node that has its room.
		Eventually(func() []string {
			clk.Step(time.Second)
			return notes("Nominated", "stubborn")
		}).Should(ContainElement("Pod should schedule on: node/stubborn-node"))
		Expect(nodeClaims()).To(HaveLen(claims))
	})
})
