package interruption_test

import (
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/test"
	"github.com/backstop-sh/backstop/test/ec2sim"
)

var ctx = context.Background()

const queue = "backstop-interruptions"

// counter reads a counter of the controller's registry; labels, in pairs,
// narrow it.
func counter(name string, labels ...string) float64 {
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	v, _ := test.Metric(crmetrics.Registry, name, want)
	return v
}

func instanceID(claim *v1.NodeClaim) string {
	id := claim.Status.ProviderID
	for i := len(id) - 1; i >= 0; i-- {
		if id[i] == '/' {
			return id[i+1:]
		}
	}
	return id
}

var _ = Describe("the interruption queue", Ordered, func() {
	var sim *ec2sim.Server

	BeforeAll(func() {
		sim = test.StartBackstop(env, ec2sim.Config{Region: "ap-northeast-2", ClusterTag: "my-cluster", InterruptionQueue: queue, SpotNotice: ec2sim.Duration{Duration: 30 * time.Second}},
			"--interruption-queue="+queue, "--gc-interval=1s")
		test.ApplyManifests(ctx, env.Client, "examples.yaml")
	})

	AfterEach(func() {
		test.DeleteAllNodeClaims(ctx, env.Client)
		var nodes corev1.NodeList
		Expect(env.Client.List(ctx, &nodes)).To(Succeed())
		Expect(nodes.Items).To(BeEmpty())
	})

	var ns string
	BeforeEach(func() {
		nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "interruption-"}}
		Expect(env.Client.Create(ctx, nsObj)).To(Succeed())
		ns = nsObj.Name
	})

	// runningPod plays a pod running on the node.
	runningPod := func(node *corev1.Node, name string) *corev1.Pod {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{NodeName: node.Name, TerminationGracePeriodSeconds: ptr.To[int64](1),
				Containers: []corev1.Container{{Name: "web", Image: "web"}}},
		}
		Expect(env.Client.Create(ctx, pod)).To(Succeed())
		pod.Status.Phase = corev1.PodRunning
		pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		Expect(env.Client.Status().Update(ctx, pod)).To(Succeed())
		return pod
	}

	// readyNode launches a NodeClaim and plays its node up to initialized,
	// with running pods of the given names on it from before it is Ready:
	// the pool consolidates empty nodes at once, so a pod placed after
	// initialization may come too late to keep the node.
	readyNode := func(pods ...string) (*v1.NodeClaim, *corev1.Node) {
		claim := test.LaunchedClaim(ctx, env.Client, ns)
		node := test.JoinNode(ctx, env.Client, claim)
		for _, name := range pods {
			runningPod(node, name)
		}
		test.MarkReady(ctx, env.Client, node)
		test.AwaitInitialized(ctx, env.Client, node)
		Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(claim), claim)).To(Succeed())
		return claim, node
	}

	claims := func() []v1.NodeClaim {
		var list v1.NodeClaimList
		Expect(env.Client.List(ctx, &list)).To(Succeed())
		return list.Items
	}

	events := func(reason string) []string {
		var evs eventsv1.EventList
		Expect(env.Client.List(ctx, &evs)).To(Succeed())
		var out []string
		for _, e := range evs.Items {
			if e.Reason == reason {
				out = append(out, e.Regarding.Kind+"/"+e.Regarding.Name+": "+e.Note)
			}
		}
		return out
	}

	drained := func() bool { return sim.QueueDepth(queue) == 0 }

	It("answers a Spot interruption warning with replacement capacity at once, then drains the node once it is Ready, before the reclaim", func() {
		// The pod is provisioned for, as a user's is: its NodeClaim was
		// planned for it, and the nomination that brought it there must not
		// pass for a place to go.
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web", Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To[int64](1), Containers: []corev1.Container{{Name: "web", Image: "web",
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}}}},
		}
		Expect(env.Client.Create(ctx, pod)).To(Succeed())
		pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable}}
		Expect(env.Client.Status().Update(ctx, pod)).To(Succeed())
		claim := &v1.NodeClaim{}
		Eventually(func(g Gomega) {
			list := claims()
			g.Expect(list).To(HaveLen(1))
			g.Expect(list[0].Status.ProviderID).NotTo(BeEmpty())
			*claim = list[0]
		}, 15*time.Second).Should(Succeed())
		node := test.JoinNode(ctx, env.Client, claim)
		test.MarkReady(ctx, env.Client, node)
		test.AwaitInitialized(ctx, env.Client, node)
		// kube-scheduler's part: bind it there; the kubelet's: run it.
		Expect(env.Client.SubResource("binding").Create(ctx, pod, &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: ns}, Target: corev1.ObjectReference{Kind: "Node", Name: node.Name}})).To(Succeed())
		Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(pod), pod)).To(Succeed())
		pod.Status.Phase = corev1.PodRunning
		pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, {Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		Expect(env.Client.Status().Update(ctx, pod)).To(Succeed())
		Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(claim), claim)).To(Succeed())
		received := counter("karpenter_interruption_received_messages_total", "message_type", "spot_interrupted")
		disrupted := counter("karpenter_nodeclaims_disrupted_total", "reason", "spot_interrupted", "nodepool", "batch")
		terminated := counter("karpenter_nodes_terminated_total", "nodepool", "batch")
		Expect(counter("karpenter_nodes_created_total", "nodepool", "batch")).To(BeNumerically(">=", 1), "the node's registration counted")
		Expect(sim.Interrupt(instanceID(claim))).To(BeTrue())
		warned := time.Now()

		var replacement v1.NodeClaim
		Eventually(func(g Gomega) {
			g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(node), node)).To(Succeed())
			g.Expect(node.Spec.Taints).To(ContainElement(HaveField("Key", v1.DisruptedTaintKey)), "tainted so nothing new lands")
			g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(claim), claim)).To(Succeed())
			g.Expect(claim.Annotations).To(HaveKey(v1.ReclaimAtAnnotation))
			g.Expect(claim.DeletionTimestamp).To(BeNil(), "not drained before the replacement is Ready")
			found := false
			for _, c := range claims() {
				if c.Name != claim.Name && c.Status.ProviderID != "" {
					replacement, found = c, true
				}
			}
			g.Expect(found).To(BeTrue(), "a replacement NodeClaim is launched while the pod still runs")
		}, 10*time.Second).Should(Succeed())
		Expect(time.Since(warned)).To(BeNumerically("<", 10*time.Second))
		Expect(counter("karpenter_interruption_received_messages_total", "message_type", "spot_interrupted")).To(Equal(received + 1))
		Expect(counter("backstop_unavailable_offerings_marked_total", "reason", "SpotInterruptionWarning")).To(BeNumerically(">=", 1))
		Expect(replacement.Labels[corev1.LabelInstanceTypeStable]+"/"+replacement.Labels[corev1.LabelTopologyZone]+"/"+replacement.Labels[v1.CapacityTypeLabelKey]).
			NotTo(Equal(claim.Labels[corev1.LabelInstanceTypeStable]+"/"+claim.Labels[corev1.LabelTopologyZone]+"/spot"), "not the offering being reclaimed")
		Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(pod), pod)).To(Succeed())
		Expect(pod.DeletionTimestamp).To(BeNil(), "the pod keeps running until its replacement is Ready")
		Eventually(drained, 5*time.Second).Should(BeTrue(), "the message is deleted once handled")

		Consistently(func() *metav1.Time {
			Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(claim), claim)).To(Succeed())
			return claim.DeletionTimestamp
		}, 2*time.Second).Should(BeNil(), "the replacement is not Ready yet")

		replacementNode := test.JoinNode(ctx, env.Client, &replacement)
		test.MarkReady(ctx, env.Client, replacementNode)
		Eventually(func() *metav1.Time {
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
				return &metav1.Time{}
			}
			return pod.DeletionTimestamp
		}, 15*time.Second).ShouldNot(BeNil(), "evicted once the replacement is Ready")
		Eventually(test.Gone(ctx, env.Client, claim), 15*time.Second).Should(BeTrue())
		Expect(time.Since(warned)).To(BeNumerically("<", 30*time.Second), "all before the reclaim")
		// Karpenter's dashboards see it: a disruption, a terminated node.
		Expect(counter("karpenter_nodeclaims_disrupted_total", "reason", "spot_interrupted", "nodepool", "batch")).To(Equal(disrupted + 1))
		Expect(counter("karpenter_nodes_terminated_total", "nodepool", "batch")).To(BeNumerically(">", terminated))
		Expect(events("SpotInterrupted")).To(ContainElement(ContainSubstring("NodeClaim/" + claim.Name)))
		Expect(events("SpotInterrupted")).To(ContainElement(ContainSubstring("Node/" + node.Name)))
		Expect(events("Draining")).To(ContainElement(ContainSubstring("every pod that must leave has a Ready place")))
	})

	It("handles the same warning delivered twice only once", func() {
		claim, _ := readyNode("web")
		body := fmt.Sprintf(`{"version":"0","id":"dup-1","detail-type":"EC2 Spot Instance Interruption Warning","source":"aws.ec2","account":"123456789012",`+
			`"time":%q,"region":"us-east-1","resources":[],"detail":{"instance-id":%q,"instance-action":"terminate"}}`, time.Now().UTC().Format(time.RFC3339), instanceID(claim))
		Expect(sim.Publish(queue, body)).To(BeTrue())
		Expect(sim.Publish(queue, body)).To(BeTrue())
		Eventually(drained, 10*time.Second).Should(BeTrue())
		Eventually(func() int { return len(claims()) }, 10*time.Second).Should(Equal(2))
		Consistently(func() int { return len(claims()) }, 3*time.Second).Should(Equal(2), "one replacement, not two")
	})

	It("deletes the NodeClaim, draining its node, when its instance is stopping or scheduled for retirement", func() {
		claim, node := readyNode()
		body := fmt.Sprintf(`{"version":"0","id":"s-1","detail-type":"EC2 Instance State-change Notification","source":"aws.ec2","account":"123456789012",`+
			`"time":%q,"region":"us-east-1","resources":[],"detail":{"instance-id":%q,"state":"stopping"}}`, time.Now().UTC().Format(time.RFC3339), instanceID(claim))
		Expect(sim.Publish(queue, body)).To(BeTrue())
		Eventually(test.Gone(ctx, env.Client, node), 15*time.Second).Should(BeTrue())
		Eventually(test.Gone(ctx, env.Client, claim), 15*time.Second).Should(BeTrue())
		Expect(events("InstanceStateChange")).To(ContainElement(ContainSubstring("instance state stopping")))

		claim, node = readyNode()
		Expect(sim.ScheduleRetirement(instanceID(claim), time.Now().Add(72*time.Hour))).To(BeTrue())
		Eventually(test.Gone(ctx, env.Client, node), 15*time.Second).Should(BeTrue())
		Eventually(test.Gone(ctx, env.Client, claim), 15*time.Second).Should(BeTrue())
		Expect(events("ScheduledChange")).To(ContainElement(ContainSubstring("AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED")))
	})

	It("lives next to another agent that cordoned the node and evicted a pod: keeps the cordon, evicts nothing twice", func() {
		claim, node := readyNode("web")
		// Node Termination Handler's part: cordon, and evict a pod, which is
		// still stopping (its finalizer holds it).
		gone := runningPod(node, "leaving")
		Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(gone), gone)).To(Succeed())
		gone.Finalizers = []string{"example.com/hold"}
		Expect(env.Client.Update(ctx, gone)).To(Succeed())
		Expect(env.Client.Delete(ctx, gone)).To(Succeed())
		Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(node), node)).To(Succeed())
		node.Spec.Unschedulable = true
		Expect(env.Client.Update(ctx, node)).To(Succeed())

		Expect(sim.Interrupt(instanceID(claim))).To(BeTrue())
		var replacement v1.NodeClaim
		Eventually(func() bool {
			for _, c := range claims() {
				if c.Name != claim.Name && c.Status.ProviderID != "" {
					replacement = c
					return true
				}
			}
			return false
		}, 10*time.Second).Should(BeTrue())
		Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(node), node)).To(Succeed())
		Expect(node.Spec.Unschedulable).To(BeTrue(), "the cordon stays")
		replacementNode := test.JoinNode(ctx, env.Client, &replacement)
		test.MarkReady(ctx, env.Client, replacementNode)
		Eventually(func() []string { return events("Evicted") }, 15*time.Second).Should(ContainElement(ContainSubstring("Pod/web")))
		Consistently(func() []string { return events("Evicted") }, 3*time.Second).ShouldNot(ContainElement(ContainSubstring("Pod/leaving")),
			"a pod another agent evicted is left to stop")
		Expect(client.IgnoreNotFound(env.Client.Get(ctx, client.ObjectKeyFromObject(node), node))).To(Succeed())
		Expect(node.Spec.Unschedulable || node.Name == "").To(BeTrue(), "never uncordoned")
		Eventually(func() error {
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(gone), gone); err != nil {
				return client.IgnoreNotFound(err)
			}
			gone.Finalizers = nil
			return env.Client.Update(ctx, gone)
		}).Should(Succeed())
	})

	It("records a rebalance recommendation and leaves the node alone by default", func() {
		claim, node := readyNode("web") // not empty, so that emptiness does not take it either
		Expect(sim.Rebalance(instanceID(claim))).To(BeTrue())
		Eventually(func() []string { return events("RebalanceRecommendation") }, 10*time.Second).Should(ContainElement(ContainSubstring("Node/" + node.Name)))
		Eventually(drained, 5*time.Second).Should(BeTrue())
		Consistently(func() []corev1.Taint {
			Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(node), node)).To(Succeed())
			return node.Spec.Taints
		}, 2*time.Second).ShouldNot(ContainElement(HaveField("Key", v1.DisruptedTaintKey)))
		Expect(claims()).To(HaveLen(1))
	})

	It("deletes and counts malformed, unknown and foreign messages without touching anything", func() {
		claim, node := readyNode("web") // not empty, so that emptiness does not take it
		malformed := counter("backstop_interruption_ignored_messages_total", "reason", "malformed")
		unknown := counter("backstop_interruption_ignored_messages_total", "reason", "unknown_type")
		foreign := counter("backstop_interruption_ignored_messages_total", "reason", "not_ours")
		deleted := counter("karpenter_interruption_deleted_messages_total")
		for _, body := range []string{
			`{"detail-type": "EC2 Spot`,
			`{"Service":"Amazon S3","Event":"s3:TestEvent"}`,
			`{"version":"0","detail-type":"EC2 AMI State Change","source":"aws.ec2","time":"2026-11-21T10:00:00Z","detail":{"ImageId":"ami-1"}}`,
			`{"version":"0","detail-type":"EC2 Spot Instance Interruption Warning","source":"aws.ec2","time":"2026-11-21T10:00:00Z","detail":{"instance-id":"i-0000000000000dead","instance-action":"terminate"}}`,
		} {
			Expect(sim.Publish(queue, body)).To(BeTrue())
		}
		Eventually(drained, 10*time.Second).Should(BeTrue(), "every one is deleted")
		Eventually(func() float64 { return counter("karpenter_interruption_deleted_messages_total") - deleted }).Should(Equal(4.0))
		Expect(counter("backstop_interruption_ignored_messages_total", "reason", "malformed") - malformed).To(Equal(2.0))
		Expect(counter("backstop_interruption_ignored_messages_total", "reason", "unknown_type") - unknown).To(Equal(1.0))
		Expect(counter("backstop_interruption_ignored_messages_total", "reason", "not_ours") - foreign).To(Equal(1.0))
		Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(node), node)).To(Succeed())
		Expect(node.Spec.Taints).NotTo(ContainElement(HaveField("Key", v1.DisruptedTaintKey)))
		Expect(claims()).To(HaveLen(1))
		Expect(claims()[0].Name).To(Equal(claim.Name))
	})

	It("keeps reading through SQS throttling and loses no message", func() {
		claim, _ := readyNode()
		errs := counter("backstop_interruption_queue_errors_total")
		sim.SetFaults(ec2sim.Faults{SQSThrottleNext: 12})
		Expect(sim.ScheduleRetirement(instanceID(claim), time.Now().Add(72*time.Hour))).To(BeTrue())
		Eventually(test.Gone(ctx, env.Client, claim), 30*time.Second).Should(BeTrue())
		Expect(counter("backstop_interruption_queue_errors_total")-errs).To(BeNumerically(">=", 1), "throttled past the SDK's own retries")
		// A message whose deletion was throttled shows again after its
		// 30-second visibility timeout, and is handled again: nothing more to do.
		Eventually(drained, 40*time.Second).Should(BeTrue())
	})
})
