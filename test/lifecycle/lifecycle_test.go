package lifecycle_test

import (
	"context"
	"fmt"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws"
	"github.com/backstop-sh/backstop/test"
	"github.com/backstop-sh/backstop/test/ec2sim"
)

var ctx = context.Background()

var _ = Describe("the NodeClaim lifecycle", Ordered, func() {
	var sim *ec2sim.Server

	BeforeAll(func() {
		sim = test.StartBackstop(env, ec2sim.Config{Region: "ap-northeast-2", ClusterTag: "my-cluster"},
			"--registration-ttl=4s", "--gc-interval=1s")
		test.ApplyManifests(ctx, env.Client, "examples.yaml")
	})

	// Each spec starts with no capacity, so its pod needs a new NodeClaim.
	AfterEach(func() { test.DeleteAllNodeClaims(ctx, env.Client) })

	var ns string
	BeforeEach(func() {
		nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "lifecycle-"}}
		Expect(env.Client.Create(ctx, nsObj)).To(Succeed())
		ns = nsObj.Name
	})

	launchedClaim := func(nodeSelector ...string) *v1.NodeClaim {
		return test.LaunchedClaim(ctx, env.Client, ns, nodeSelector...)
	}

	joinNode := func(claim *v1.NodeClaim) *corev1.Node { return test.JoinNode(ctx, env.Client, claim) }
	markReady := func(node *corev1.Node) { test.MarkReady(ctx, env.Client, node) }

	instanceState := func(providerID string) func() string {
		return func() string {
			for _, i := range sim.Instances() {
				if "aws:///"+i.Zone+"/"+i.ID == providerID {
					return i.State
				}
			}
			return "missing"
		}
	}

	gone := func(obj client.Object) func() bool { return test.Gone(ctx, env.Client, obj) }

	It("says on the NodePool whether its nodes register (NodeRegistrationHealthy), beside NodeClassReady, ValidationSucceeded and the NodeClass generation judged", func() {
		pool := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "health"}, Spec: v1.NodePoolSpec{Template: v1.NodeClaimTemplate{
			ObjectMeta: v1.TemplateMetadata{Labels: map[string]string{"team": "health"}},
			Spec:       v1.NodeClaimTemplateSpec{NodeClassRef: &v1.NodeClassReference{Group: awsv1.Group, Kind: "EC2NodeClass", Name: "default"}}}}}
		Expect(env.Client.Create(ctx, pool)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(env.Client.Delete(ctx, pool))).To(Succeed()) })
		var class awsv1.EC2NodeClass
		Expect(env.Client.Get(ctx, client.ObjectKey{Name: "default"}, &class)).To(Succeed())
		health := func(g Gomega) metav1.Condition {
			var p v1.NodePool
			g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(pool), &p)).To(Succeed())
			c := meta.FindStatusCondition(p.Status.Conditions, v1.ConditionNodeRegistrationHealthy)
			g.Expect(c).NotTo(BeNil())
			return *c
		}
		Eventually(func(g Gomega) {
			var p v1.NodePool
			g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(pool), &p)).To(Succeed())
			g.Expect(p.Status.NodeClassObservedGeneration).To(Equal(class.Generation))
			for _, t := range []string{v1.ConditionNodeClassReady, v1.ConditionValidationSucceeded, v1.ConditionReady} {
				g.Expect(meta.IsStatusConditionTrue(p.Status.Conditions, t)).To(BeTrue(), t)
			}
			g.Expect(health(g).Status).To(Equal(metav1.ConditionUnknown), "nothing launched yet")
		}, 15*time.Second).Should(Succeed())

		joined := launchedClaim("team", "health")
		joinNode(joined)
		Eventually(func(g Gomega) { g.Expect(health(g).Status).To(Equal(metav1.ConditionTrue)) }, 15*time.Second).Should(Succeed())
		// Its node out of the way, so the next pods need NodeClaims of their own.
		test.DeleteAllNodeClaims(ctx, env.Client)

		// Two NodeClaims whose nodes never join: two of the last three failed.
		first := launchedClaim("team", "health")
		Eventually(gone(first), 15*time.Second).Should(BeTrue())
		Consistently(func(g Gomega) { g.Expect(health(g).Status).To(Equal(metav1.ConditionTrue)) }, 2*time.Second).Should(Succeed(), "one failure in the window is not enough")
		second := launchedClaim("team", "health")
		Eventually(gone(second), 15*time.Second).Should(BeTrue())
		Eventually(func(g Gomega) {
			c := health(g)
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(c.Reason).To(Equal("RegistrationFailed"))
			g.Expect(c.Message).To(ContainSubstring(second.Name))
		}, 10*time.Second).Should(Succeed())

		// A change of the NodePool starts over.
		Eventually(func(g Gomega) {
			g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(pool), pool)).To(Succeed())
			pool.Spec.Template.ObjectMeta.Labels["tier"] = "2"
			g.Expect(env.Client.Update(ctx, pool)).To(Succeed())
		}, 5*time.Second).Should(Succeed(), "status writes may race the update")
		Eventually(func(g Gomega) { g.Expect(health(g).Status).To(Equal(metav1.ConditionUnknown)) }, 10*time.Second).Should(Succeed())
	})

	It("adopts the node that registers: labels, taints, finalizer, owner; then marks it initialized when Ready", func() {
		claim := launchedClaim()
		node := joinNode(claim)
		Eventually(func(g Gomega) {
			g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(node), node)).To(Succeed())
			g.Expect(node.Labels).To(HaveKeyWithValue(v1.RegisteredLabelKey, "true"))
			g.Expect(node.Labels).To(HaveKeyWithValue(v1.NodePoolLabelKey, claim.Labels[v1.NodePoolLabelKey]))
			g.Expect(node.Labels).To(HaveKeyWithValue(v1.CapacityTypeLabelKey, "spot"))
			g.Expect(node.Labels).To(HaveKey(corev1.LabelInstanceTypeStable))
			g.Expect(node.Labels).To(HaveKey(corev1.LabelTopologyZone))
			g.Expect(node.Labels).To(HaveKey("karpenter.k8s.aws/instance-family"))
			g.Expect(node.Spec.Taints).NotTo(ContainElement(HaveField("Key", v1.UnregisteredTaintKey)))
			g.Expect(node.Finalizers).To(ContainElement(v1.TerminationFinalizer))
			g.Expect(node.OwnerReferences).To(ContainElement(HaveField("Name", claim.Name)))
		}, 10*time.Second).Should(Succeed())
		Eventually(func() string {
			Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(claim), claim)).To(Succeed())
			return claim.Status.NodeName
		}).Should(Equal(node.Name))

		markReady(node)
		Eventually(func(g Gomega) {
			pool := &v1.NodePool{}
			g.Expect(env.Client.Get(ctx, client.ObjectKey{Name: "batch"}, pool)).To(Succeed())
			g.Expect(pool.Status.Nodes).To(Equal(ptr.To[int64](1)))
			g.Expect(pool.Status.Resources).To(HaveKey(corev1.ResourceCPU))
			g.Expect(pool.Status.Conditions).To(ContainElement(And(HaveField("Type", v1.ConditionReady), HaveField("Status", metav1.ConditionTrue))))
		}, 10*time.Second).Should(Succeed(), "the NodePool counts its node and is ready")
		Eventually(func(g Gomega) {
			g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(node), node)).To(Succeed())
			c := &v1.NodeClaim{}
			g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(claim), c)).To(Succeed())
			g.Expect(node.Labels).To(HaveKeyWithValue(v1.InitializedLabelKey, "true"), "claim conditions: %+v; node conditions %+v taints %+v", c.Status.Conditions, node.Status.Conditions, node.Spec.Taints)
			g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(claim), claim)).To(Succeed())
			g.Expect(claim.Status.Conditions).To(ContainElement(And(HaveField("Type", v1.ConditionReady), HaveField("Status", metav1.ConditionTrue))))
		}, 10*time.Second).Should(Succeed())
	})

	It("launches a NodePool's nodes into its class's placement group, labelled with the group and partition, and a pod that selects a partition into it", func() {
		id, err := sim.AddPlacementGroup(ec2sim.PlacementGroupConfig{Name: "kafka", Strategy: "partition", PartitionCount: 3})
		Expect(err).NotTo(HaveOccurred())
		base := &awsv1.EC2NodeClass{}
		Expect(env.Client.Get(ctx, client.ObjectKey{Name: "default"}, base)).To(Succeed())
		class := &awsv1.EC2NodeClass{ObjectMeta: metav1.ObjectMeta{Name: "kafka"}, Spec: *base.Spec.DeepCopy()}
		class.Spec.PlacementGroupSelector = &awsv1.PlacementGroupSelector{Name: ptr.To("kafka")}
		Expect(env.Client.Create(ctx, class)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(env.Client.Delete(ctx, class))).To(Succeed()) })
		pool := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "kafka"}, Spec: v1.NodePoolSpec{Template: v1.NodeClaimTemplate{
			Spec: v1.NodeClaimTemplateSpec{NodeClassRef: &v1.NodeClassReference{Group: awsv1.Group, Kind: "EC2NodeClass", Name: "kafka"}}}}}
		Expect(env.Client.Create(ctx, pool)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(env.Client.Delete(ctx, pool))).To(Succeed()) })
		Eventually(func(g Gomega) {
			g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(class), class)).To(Succeed())
			g.Expect(class.Status.PlacementGroup).NotTo(BeNil())
			g.Expect(*class.Status.PlacementGroup).To(Equal(awsv1.PlacementGroup{ID: id, Name: "kafka", Strategy: "partition", PartitionCount: 3}))
			g.Expect(meta.IsStatusConditionTrue(class.Status.Conditions, awsv1.ConditionPlacementGroupReady)).To(BeTrue())
			g.Expect(meta.IsStatusConditionTrue(class.Status.Conditions, awsv1.ConditionReady)).To(BeTrue())
		}, 15*time.Second).Should(Succeed())

		// Only the kafka pool's types carry the group's id.
		claim := launchedClaim(aws.LabelPlacementGroupID, id)
		Expect(claim.Labels).To(HaveKeyWithValue(v1.NodePoolLabelKey, "kafka"))
		Expect(claim.Labels).To(HaveKeyWithValue(aws.LabelPlacementGroupID, id))
		var inst ec2sim.Instance
		for _, i := range sim.Instances() {
			if "aws:///"+i.Zone+"/"+i.ID == claim.Status.ProviderID {
				inst = i
			}
		}
		Expect(inst.ID).NotTo(BeEmpty(), "the NodeClaim's instance")
		Expect(inst.PlacementGroup).To(Equal("kafka"))
		Expect(claim.Labels).To(HaveKeyWithValue(aws.LabelPlacementGroupPartition, strconv.Itoa(inst.PartitionNumber)))
		node := joinNode(claim)
		Eventually(func(g Gomega) {
			g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(node), node)).To(Succeed())
			g.Expect(node.Labels).To(HaveKeyWithValue(aws.LabelPlacementGroupID, id))
			g.Expect(node.Labels).To(HaveKeyWithValue(aws.LabelPlacementGroupPartition, strconv.Itoa(inst.PartitionNumber)))
		}, 10*time.Second).Should(Succeed())

		// A pod that selects another partition gets a NodeClaim launched into it.
		Expect(inst.PartitionNumber).NotTo(Equal(3))
		third := launchedClaim(aws.LabelPlacementGroupPartition, "3")
		Expect(third.Labels).To(HaveKeyWithValue(aws.LabelPlacementGroupPartition, "3"))
		partitionOf := map[string]int{}
		for _, i := range sim.Instances() {
			partitionOf["aws:///"+i.Zone+"/"+i.ID] = i.PartitionNumber
		}
		Expect(partitionOf).To(HaveKeyWithValue(third.Status.ProviderID, 3))
	})

	It("keeps a class asking for what Backstop does not do or EC2 does not have not Ready, and launches nothing for it until that is removed", func() {
		base := &awsv1.EC2NodeClass{}
		Expect(env.Client.Get(ctx, client.ObjectKey{Name: "default"}, base)).To(Succeed())
		class := &awsv1.EC2NodeClass{ObjectMeta: metav1.ObjectMeta{Name: "pinned"}, Spec: *base.Spec.DeepCopy()}
		class.Spec.PlacementGroupSelector = &awsv1.PlacementGroupSelector{Name: ptr.To("training")}
		class.Spec.CapacityReservationSelectorTerms = []awsv1.CapacityReservationSelectorTerm{{ID: "cr-0123456789abcdef0"}}
		class.Spec.NetworkInterfaces = []awsv1.NetworkInterface{{InterfaceType: "interface"}, {NetworkCardIndex: 1, InterfaceType: "efa-only"}}
		Expect(env.Client.Create(ctx, class)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(env.Client.Delete(ctx, class))).To(Succeed()) })
		pool := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "pinned"}, Spec: v1.NodePoolSpec{
			Template: v1.NodeClaimTemplate{ObjectMeta: v1.TemplateMetadata{Labels: map[string]string{"example.com/pool": "pinned"}},
				Spec: v1.NodeClaimTemplateSpec{NodeClassRef: &v1.NodeClassReference{Group: awsv1.Group, Kind: "EC2NodeClass", Name: "pinned"}}}}}
		Expect(env.Client.Create(ctx, pool)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(env.Client.Delete(ctx, pool))).To(Succeed()) })
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pinned"}, Spec: corev1.PodSpec{
			NodeSelector: map[string]string{"example.com/pool": "pinned"},
			Containers:   []corev1.Container{{Name: "app", Image: "app"}}}}
		Expect(env.Client.Create(ctx, pod)).To(Succeed())
		pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable}}
		Expect(env.Client.Status().Update(ctx, pod)).To(Succeed())
		condition := func(obj client.Object, kind string) func(g Gomega) *metav1.Condition {
			return func(g Gomega) *metav1.Condition {
				g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj)).To(Succeed())
				var conds []metav1.Condition
				switch o := obj.(type) {
				case *awsv1.EC2NodeClass:
					conds = o.Status.Conditions
				case *v1.NodePool:
					conds = o.Status.Conditions
				}
				c := meta.FindStatusCondition(conds, kind)
				g.Expect(c).NotTo(BeNil())
				return c
			}
		}
		Eventually(func(g Gomega) {
			c := condition(class, awsv1.ConditionValidationSucceeded)(g)
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(c.Reason).To(Equal("UnsupportedField"))
			g.Expect(c.Message).To(ContainSubstring("spec.networkInterfaces"))
			g.Expect(c.Message).NotTo(ContainSubstring("capacityReservation"), "reservations are launched into")
			g.Expect(c.Message).NotTo(ContainSubstring("placementGroup"), "placement groups are launched into")
			pg := condition(class, awsv1.ConditionPlacementGroupReady)(g)
			g.Expect(pg.Status).To(Equal(metav1.ConditionFalse), "the account has no group named training")
			g.Expect(pg.Message).To(ContainSubstring("spec.placementGroupSelector: EC2 knows no placement group with name training"))
			g.Expect(condition(class, awsv1.ConditionCapacityReservationsReady)(g).Message).To(ContainSubstring("cr-0123456789abcdef0 does not exist"))
			g.Expect(condition(class, awsv1.ConditionReady)(g).Status).To(Equal(metav1.ConditionFalse))
			ready := condition(&v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "pinned"}}, v1.ConditionReady)(g)
			g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(ready.Message).To(ContainSubstring("spec.placementGroupSelector"))
		}, 15*time.Second).Should(Succeed())
		claimsOf := func(pool string) func() int {
			return func() int {
				var list v1.NodeClaimList
				Expect(env.Client.List(ctx, &list, client.MatchingLabels{v1.NodePoolLabelKey: pool})).To(Succeed())
				return len(list.Items)
			}
		}
		// Two batch windows (idle 1 s) and more: nothing is asked for.
		Consistently(claimsOf("pinned"), 4*time.Second).Should(BeZero())

		// Without those fields the class launches for its pod.
		Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(class), class)).To(Succeed())
		class.Spec.PlacementGroupSelector, class.Spec.CapacityReservationSelectorTerms, class.Spec.NetworkInterfaces = nil, nil, nil
		Expect(env.Client.Update(ctx, class)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(condition(class, awsv1.ConditionValidationSucceeded)(g).Status).To(Equal(metav1.ConditionTrue))
		}, 15*time.Second).Should(Succeed())
		Eventually(claimsOf("pinned"), 20*time.Second).Should(Equal(1))

		// Gone before AfterEach deletes the NodeClaims, or it would make
		// another for its pending pod, which would outlive this spec.
		Expect(env.Client.Delete(ctx, pool)).To(Succeed())
		Eventually(gone(pool), 10*time.Second).Should(BeTrue())
	})

	It("keeps a static NodePool at its replicas: launched without pods, pods planned onto them rather than new nodes, the surplus terminated when the count goes down", func() {
		pool := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "fixed"}, Spec: v1.NodePoolSpec{Replicas: ptr.To[int64](2),
			Template: v1.NodeClaimTemplate{ObjectMeta: v1.TemplateMetadata{Labels: map[string]string{"example.com/pool": "fixed"}},
				Spec: v1.NodeClaimTemplateSpec{NodeClassRef: &v1.NodeClassReference{Group: awsv1.Group, Kind: "EC2NodeClass", Name: "default"},
					Requirements: []v1.NodeSelectorRequirementWithMinValues{{Key: corev1.LabelInstanceTypeStable, Operator: v1.OpIn, Values: []string{"m5.large"}}}}}}}
		Expect(env.Client.Create(ctx, pool)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(env.Client.Delete(ctx, pool))).To(Succeed()) })
		live := func(g Gomega) []v1.NodeClaim {
			var list v1.NodeClaimList
			g.Expect(env.Client.List(ctx, &list, client.MatchingLabels{v1.NodePoolLabelKey: "fixed"})).To(Succeed())
			var out []v1.NodeClaim
			for _, c := range list.Items {
				if c.DeletionTimestamp == nil {
					out = append(out, c)
				}
			}
			return out
		}
		// Their nodes join as soon as they launch (registration-ttl is 4 s here).
		joined := map[string]bool{}
		var claims []v1.NodeClaim
		Eventually(func(g Gomega) {
			claims = live(g)
			for i := range claims {
				if claims[i].Status.ProviderID != "" && !joined[claims[i].Name] {
					markReady(joinNode(&claims[i]))
					joined[claims[i].Name] = true
				}
			}
			g.Expect(joined).To(HaveLen(2))
		}, 20*time.Second).Should(Succeed())
		for _, c := range claims {
			Expect(c.Labels).To(HaveKeyWithValue(corev1.LabelInstanceTypeStable, "m5.large"))
			Expect(instanceState(c.Status.ProviderID)()).To(Equal("running"))
		}
		Eventually(func(g Gomega) {
			var p v1.NodePool
			g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(pool), &p)).To(Succeed())
			g.Expect(meta.IsStatusConditionTrue(p.Status.Conditions, v1.ConditionReady)).To(BeTrue())
		}, 10*time.Second).Should(Succeed())

		// Pending pods that only the static pool's nodes can take: two fit
		// them, one per node; the third fits neither and gets no new node,
		// of that pool or any other.
		for i := range 3 {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("fixed-%d", i)}, Spec: corev1.PodSpec{
				NodeSelector: map[string]string{"example.com/pool": "fixed"},
				Containers: []corev1.Container{{Name: "app", Image: "app", Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1500m")}}}}}}
			Expect(env.Client.Create(ctx, pod)).To(Succeed())
			pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable}}
			Expect(env.Client.Status().Update(ctx, pod)).To(Succeed())
		}
		Consistently(func(g Gomega) int { return len(live(g)) }, 3*time.Second).Should(Equal(2))
		var all v1.NodeClaimList
		Expect(env.Client.List(ctx, &all)).To(Succeed())
		Expect(all.Items).To(HaveLen(2))

		Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(pool), pool)).To(Succeed())
		pool.Spec.Replicas = ptr.To[int64](1)
		Expect(env.Client.Update(ctx, pool)).To(Succeed())
		Eventually(func(g Gomega) { g.Expect(live(g)).To(HaveLen(1)) }, 10*time.Second).Should(Succeed())
		terminated := 0
		Eventually(func() int {
			terminated = 0
			for _, c := range claims {
				if s := instanceState(c.Status.ProviderID)(); s == "terminated" || s == "shutting-down" || s == "missing" {
					terminated++
				}
			}
			return terminated
		}, 20*time.Second).Should(Equal(1), "the surplus node is drained and its instance terminated")

		// Gone before AfterEach deletes the NodeClaims, or it would make them again.
		Expect(env.Client.Delete(ctx, pool)).To(Succeed())
		Eventually(gone(pool), 10*time.Second).Should(BeTrue())
	})

	It("deletes a NodeClaim whose node never registers, and terminates its instance", func() {
		claim := launchedClaim()
		Expect(instanceState(claim.Status.ProviderID)()).To(Equal("running"))
		Eventually(gone(claim), 15*time.Second).Should(BeTrue(), "deleted after the 4s registration TTL")
		Eventually(instanceState(claim.Status.ProviderID), 5*time.Second).Should(Equal("terminated"))
	})

	It("drains through the Eviction API, waits for a PodDisruptionBudget, then terminates the instance", func() {
		claim := launchedClaim()
		node := joinNode(claim)
		markReady(node)
		Eventually(func() map[string]string {
			Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(node), node)).To(Succeed())
			return node.Labels
		}, 10*time.Second).Should(HaveKeyWithValue(v1.InitializedLabelKey, "true"))
		for i := 0; i < 2; i++ {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("web-%d", i), Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{NodeName: node.Name, TerminationGracePeriodSeconds: ptr.To[int64](1),
					Containers: []corev1.Container{{Name: "web", Image: "web"}}},
			}
			Expect(env.Client.Create(ctx, pod)).To(Succeed())
			pod.Status.Phase = corev1.PodRunning
			pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
			Expect(env.Client.Status().Update(ctx, pod)).To(Succeed())
		}
		pdb := &policyv1.PodDisruptionBudget{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
			Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromInt32(2)),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
		}
		Expect(env.Client.Create(ctx, pdb)).To(Succeed())
		// No disruption controller runs here; say what one would: nothing may go.
		pdb.Status = policyv1.PodDisruptionBudgetStatus{CurrentHealthy: 2, DesiredHealthy: 2, ExpectedPods: 2, DisruptionsAllowed: 0, ObservedGeneration: pdb.Generation}
		Expect(env.Client.Status().Update(ctx, pdb)).To(Succeed())

		Expect(env.Client.Delete(ctx, claim)).To(Succeed())
		Eventually(func() bool {
			var evs eventsv1.EventList
			Expect(env.Client.List(ctx, &evs, client.InNamespace(ns))).To(Succeed())
			for _, e := range evs.Items {
				if e.Reason == "EvictionBlocked" {
					return true
				}
			}
			return false
		}, 10*time.Second).Should(BeTrue(), "the PDB blocks the drain")
		Consistently(instanceState(claim.Status.ProviderID), 2*time.Second).Should(Equal("running"))
		Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(node), node)).To(Succeed())
		Expect(node.Spec.Taints).To(ContainElement(HaveField("Key", v1.DisruptedTaintKey)))

		pdb.Status.DisruptionsAllowed = 2
		Expect(env.Client.Status().Update(ctx, pdb)).To(Succeed())
		Eventually(gone(node), 20*time.Second).Should(BeTrue())
		Eventually(gone(claim), 10*time.Second).Should(BeTrue())
		Expect(instanceState(claim.Status.ProviderID)()).To(Equal("terminated"))
	})

	It("deletes a pod a PDB still protects in time for it to stop by the end of the NodeClaim's terminationGracePeriod", func() {
		pool := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "graceful"}, Spec: v1.NodePoolSpec{Template: v1.NodeClaimTemplate{Spec: v1.NodeClaimTemplateSpec{
			NodeClassRef:           &v1.NodeClassReference{Group: "karpenter.k8s.aws", Kind: "EC2NodeClass", Name: "default"},
			TerminationGracePeriod: &metav1.Duration{Duration: 3 * time.Second},
			Requirements:           []v1.NodeSelectorRequirementWithMinValues{{Key: v1.CapacityTypeLabelKey, Operator: v1.OpIn, Values: []string{"on-demand"}}},
		}}}}
		Expect(env.Client.Create(ctx, pool)).To(Succeed())
		DeferCleanup(func() { Expect(env.Client.Delete(ctx, pool)).To(Succeed()) })
		claim := launchedClaim(v1.NodePoolLabelKey, "graceful")
		Expect(claim.Spec.TerminationGracePeriod.Duration).To(Equal(3 * time.Second))
		node := joinNode(claim)
		markReady(node)
		protected := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "protected", Labels: map[string]string{"app": "protected"}},
			Spec:       corev1.PodSpec{NodeName: node.Name, Containers: []corev1.Container{{Name: "c", Image: "c"}}},
		}
		Expect(env.Client.Create(ctx, protected)).To(Succeed())
		pdb := &policyv1.PodDisruptionBudget{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "protected"},
			Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ptr.To(intstr.FromInt32(0)),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "protected"}}},
		}
		Expect(env.Client.Create(ctx, pdb)).To(Succeed())
		pdb.Status = policyv1.PodDisruptionBudgetStatus{CurrentHealthy: 1, DesiredHealthy: 1, ExpectedPods: 1, DisruptionsAllowed: 0, ObservedGeneration: pdb.Generation}
		Expect(env.Client.Status().Update(ctx, pdb)).To(Succeed())
		// Nothing runs the pod: once deleted with a grace period it stays
		// terminating.
		DeferCleanup(func() { _ = env.Client.Delete(ctx, protected, client.GracePeriodSeconds(0)) })
		Expect(env.Client.Delete(ctx, claim)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(protected), protected)).To(Succeed())
			g.Expect(protected.DeletionTimestamp).NotTo(BeNil())
			// Its default 30 s would outlast the 3 s deadline.
			g.Expect(protected.DeletionGracePeriodSeconds).To(HaveValue(BeNumerically("<=", 3)))
		}, 20*time.Second).Should(Succeed(), "deleted despite the PDB, with no more grace than the deadline leaves")
		Eventually(gone(node), 20*time.Second).Should(BeTrue())
		Eventually(instanceState(claim.Status.ProviderID), 10*time.Second).Should(Equal("terminated"))
	})

	It("deletes a NodeClaim whose instance was terminated outside Backstop", func() {
		claim := launchedClaim()
		id, err := aws.InstanceID(claim.Status.ProviderID)
		Expect(err).NotTo(HaveOccurred())
		Expect(sim.Terminate(id)).To(BeTrue())
		Eventually(gone(claim), 10*time.Second).Should(BeTrue(), "garbage collection notices within a round")
	})

	It("terminates an instance of this cluster whose NodeClaim is gone, and leaves other instances alone", func() {
		claim := launchedClaim()
		// Remove the NodeClaim without termination, as a crash mid-launch would leave it.
		Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(claim), claim)).To(Succeed())
		claim.Finalizers = nil
		Expect(env.Client.Update(ctx, claim)).To(Succeed())
		Expect(env.Client.Delete(ctx, claim)).To(Succeed())
		Eventually(instanceState(claim.Status.ProviderID), 10*time.Second).Should(Equal("terminated"))
		foreign := sim.Launch("m5.large", "ap-northeast-2a", map[string]string{"team": "someone-else"})
		Consistently(func() string { return instanceStateByID(sim, foreign) }, 3*time.Second).Should(Equal("running"), "never touch an instance we did not tag")
	})
})

func instanceStateByID(sim *ec2sim.Server, id string) string {
	for _, i := range sim.Instances() {
		if i.ID == id {
			return i.State
		}
	}
	return "missing"
}
