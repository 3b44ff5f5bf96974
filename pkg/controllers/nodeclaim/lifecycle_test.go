package nodeclaim_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider"
	"github.com/backstop-sh/backstop/pkg/controllers/metrics"
	"github.com/backstop-sh/backstop/pkg/controllers/nodeclaim"
	"github.com/backstop-sh/backstop/test"
)

var _ = Describe("the launch controller", func() {
	var (
		w      *world
		pool   *v1.NodePool
		failed *failures
		launch *nodeclaim.Launch
	)
	BeforeEach(func() {
		w = newWorld()
		pool = w.newPool()
		failed = &failures{}
		launch = nodeclaim.NewLaunch(w.client, w.cloud, w.recorder, w.clock, failed, newLaunchMetrics())
	})

	It("launches through the cloud provider and records the instance, its labels and when", func() {
		claim := w.newClaim(pool, "default")
		_, err := launch.Reconcile(w.ctx, request(claim))
		Expect(err).NotTo(HaveOccurred())
		w.get(claim)
		Expect(claim.Status.ProviderID).To(HavePrefix("fake:///zone-a/i-"))
		Expect(failed.launched).To(Equal(map[string]string{claim.Name: claim.Status.ProviderID}),
			"provisioning knows the instance before the cache shows the record")
		Expect(claim.Status.Allocatable).To(HaveKey(corev1.ResourceCPU))
		Expect(claim.Labels).To(HaveKeyWithValue(corev1.LabelInstanceTypeStable, "m5.large"))
		Expect(claim.Labels).To(HaveKeyWithValue(corev1.LabelTopologyZone, "zone-a"))
		Expect(claim.Labels).To(HaveKeyWithValue(v1.CapacityTypeLabelKey, v1.CapacityTypeSpot))
		launched := meta.FindStatusCondition(claim.Status.Conditions, v1.ConditionLaunched)
		Expect(launched).NotTo(BeNil())
		Expect(launched.LastTransitionTime.Time).To(BeTemporally("==", w.clock.Now()), "time comes from the injected clock")
		Expect(w.events()).To(ContainElement(HavePrefix("Normal Launched Launched spot m5.large in zone-a")))

		w.seen(claim)
		_, err = launch.Reconcile(w.ctx, request(claim))
		Expect(err).NotTo(HaveOccurred())
		Expect(w.cloud.Calls("Create")).To(Equal(1), "a launched NodeClaim is not launched again")
		Expect(w.cloud.Instances()).To(HaveLen(1))
	})

	It("adopts the instance a launch made when its answer was lost, instead of making another", func() {
		claim := w.newClaim(pool, "default")
		w.cloud.LaunchThenFail = []error{&cloudprovider.RetryableError{Cause: cloudprovider.Cause{Code: "InternalError"}, Operation: "CreateFleet"}}
		_, err := launch.Reconcile(w.ctx, request(claim))
		Expect(err).To(MatchError(ContainSubstring("InternalError")), "a passing fault is retried by controller-runtime")
		Expect(w.cloud.Instances()).To(HaveLen(1), "but the instance exists")
		w.get(claim)
		Expect(claim.DeletionTimestamp).To(BeNil())
		// Capacity ran out meanwhile: the cloud is asked for what it made before any mark counts.
		w.cloud.CreateErrors = []error{&cloudprovider.InsufficientCapacityError{Cause: cloudprovider.Cause{Code: "InsufficientInstanceCapacity"}}}
		_, err = launch.Reconcile(w.ctx, request(claim))
		Expect(err).NotTo(HaveOccurred())
		w.get(claim)
		Expect(claim.Status.ProviderID).To(Equal(w.cloud.Instances()[0].ProviderID))
		Expect(w.cloud.Instances()).To(HaveLen(1))
	})

	It("says why a launch waits and asks again when the cloud says, for a fault of known length", func() {
		claim := w.newClaim(pool, "default")
		propagating := func() error {
			return &cloudprovider.RetryableError{Cause: cloudprovider.Cause{Code: "InstanceProfileNotPropagated", RequestID: "req-7",
				Err: errors.New("EC2 does not see the instance profile yet")}, Operation: "CreateFleet", RetryAfter: 3 * time.Second}
		}
		w.cloud.CreateErrors = []error{propagating()}
		res, err := launch.Reconcile(w.ctx, request(claim))
		Expect(err).NotTo(HaveOccurred(), "not controller-runtime's backoff from milliseconds")
		Expect(res.RequeueAfter).To(Equal(3 * time.Second))
		w.get(claim)
		cond := meta.FindStatusCondition(claim.Status.Conditions, v1.ConditionLaunched)
		Expect(cond).NotTo(BeNil())
		Expect(cond.Status).To(Equal(metav1.ConditionFalse))
		Expect(cond.Reason).To(Equal("InstanceProfileNotPropagated"))
		Expect(cond.Message).To(Equal("EC2 does not see the instance profile yet"), "no request id: the same refusal again writes nothing")
		w.seen(claim)
		version := claim.ResourceVersion
		w.cloud.CreateErrors = []error{propagating()}
		_, err = launch.Reconcile(w.ctx, request(claim))
		Expect(err).NotTo(HaveOccurred())
		w.get(claim)
		Expect(claim.ResourceVersion).To(Equal(version), "no update, so no early reconcile")
		_, err = launch.Reconcile(w.ctx, request(claim))
		Expect(err).NotTo(HaveOccurred())
		w.get(claim)
		Expect(claim.Status.ProviderID).NotTo(BeEmpty())
	})

	It("gives a NodeClaim up at once on a capacity error, hands its pods back, and closes Spot on the pool when the account ran out", func() {
		// Another controller owns Ready; the launch controller must not erase it.
		pool.Status.Conditions = []metav1.Condition{{Type: v1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Ready", LastTransitionTime: metav1.Now()}}
		Expect(env.Client.Status().Update(w.ctx, pool)).To(Succeed())
		w.seen(pool)
		claim := w.newClaim(pool, "default")
		w.cloud.CreateErrors = []error{&cloudprovider.InsufficientCapacityError{
			Cause: cloudprovider.Cause{Code: "MaxSpotInstanceCountExceeded", RequestID: "req-1"}, Message: "the Spot vCPU quota is used up", ClosedCapacityType: v1.CapacityTypeSpot}}
		_, err := launch.Reconcile(w.ctx, request(claim))
		Expect(err).NotTo(HaveOccurred())
		Expect(failed.reasons).To(Equal([]string{"MaxSpotInstanceCountExceeded"}))
		Expect(env.Client.Get(w.ctx, client.ObjectKeyFromObject(claim), claim)).To(Succeed())
		Expect(claim.DeletionTimestamp).NotTo(BeNil(), "deleted; its finalizer asks the cloud before it goes")
		Expect(w.events()).To(ContainElement(ContainSubstring("InsufficientCapacityError")))

		w.get(pool)
		spot := meta.FindStatusCondition(pool.Status.Conditions, nodeclaim.ConditionSpotAvailable)
		Expect(spot).NotTo(BeNil())
		Expect(spot.Status).To(Equal(metav1.ConditionFalse))
		Expect(spot.Message).To(ContainSubstring("vCPU quota"))
		Expect(meta.IsStatusConditionTrue(pool.Status.Conditions, v1.ConditionReady)).To(BeTrue(), "the other owner's condition survives")
	})

	It("does not drop a condition written since the copy it read when it records why it could not launch", func() {
		w.cloud.NotReady["broken"] = "EC2NodeClass broken is not ready: no subnet matched"
		claim := w.newClaim(pool, "broken")
		stale := claim.DeepCopy()
		meta.SetStatusCondition(&claim.Status.Conditions, metav1.Condition{Type: v1.ConditionDrifted, Status: metav1.ConditionTrue, Reason: "NodePoolDrifted", LastTransitionTime: metav1.NewTime(w.clock.Now())})
		Expect(env.Client.Status().Update(w.ctx, claim)).To(Succeed(), "another controller writes a condition")
		cache := &lagging{Client: w.client, stale: stale}
		l := nodeclaim.NewLaunch(cache, w.cloud, w.recorder, w.clock, failed, newLaunchMetrics())
		result, err := l.Reconcile(w.ctx, request(claim))
		Expect(err).NotTo(HaveOccurred())
		Expect(result.Requeue).To(BeTrue(), "the stale write is refused and the reconcile asked again")
		w.get(claim)
		Expect(meta.IsStatusConditionTrue(claim.Status.Conditions, v1.ConditionDrifted)).To(BeTrue(), "Drifted is still there")
	})

	It("reports a NodeClass that is not ready and gives the NodeClaim up after the launch timeout", func() {
		w.cloud.NotReady["broken"] = "EC2NodeClass broken is not ready: no subnet matched"
		claim := w.newClaim(pool, "broken")
		result, err := launch.Reconcile(w.ctx, request(claim))
		Expect(err).NotTo(HaveOccurred())
		Expect(result.RequeueAfter).To(Equal(30 * time.Second))
		w.get(claim)
		c := meta.FindStatusCondition(claim.Status.Conditions, v1.ConditionLaunched)
		Expect(c.Status).To(Equal(metav1.ConditionFalse))
		Expect(c.Reason).To(Equal("NodeClassNotReady"))
		Expect(c.Message).To(ContainSubstring("no subnet matched"))
		Expect(failed.reasons).To(BeEmpty())

		told := &outcomes{}
		launch.Outcomes = told
		w.seen(claim)
		w.clock.SetTime(claim.CreationTimestamp.Add(launch.Timeout))
		_, err = launch.Reconcile(w.ctx, request(claim))
		Expect(err).NotTo(HaveOccurred())
		Expect(failed.reasons).To(Equal([]string{"NodeClassNotReady"}))
		Expect(told.failed).To(Equal([]string{pool.Name + ": NodeClassNotReady: EC2NodeClass broken is not ready: no subnet matched"}),
			"the NodePool's registration health hears of it, with why")
		Expect(w.events()).To(ContainElement(ContainSubstring("LaunchTimeout")))
		w.get(claim)
		Expect(claim.DeletionTimestamp).NotTo(BeNil())
	})
})

// joined launches a NodeClaim of pool and registers its Node, as the
// kubelet does (unregistered-tainted); both are current in the cache.
func (w *world) joined(launch *nodeclaim.Launch, pool *v1.NodePool) (*v1.NodeClaim, *corev1.Node) {
	claim := w.newClaim(pool, "default")
	_, err := launch.Reconcile(w.ctx, request(claim))
	Expect(err).NotTo(HaveOccurred())
	w.get(claim)
	w.seen(claim)
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "node-"},
		Spec:       corev1.NodeSpec{ProviderID: claim.Status.ProviderID, Taints: []corev1.Taint{v1.UnregisteredNoExecuteTaint}},
	}
	Expect(env.Client.Create(w.ctx, node)).To(Succeed())
	return claim, node
}

// registering is a world with a launched NodeClaim whose Node has joined (not
// Ready), and a registration controller reading and writing through a
// lagging client.
type registering struct {
	*world
	pool   *v1.NodePool
	launch *nodeclaim.Launch
	cache  *lagging
	reg    *nodeclaim.Registration
	claim  *v1.NodeClaim
	node   *corev1.Node
}

func newRegistering() *registering {
	w := newWorld()
	r := &registering{world: w, pool: w.newPool(), cache: &lagging{Client: w.client}}
	r.launch = nodeclaim.NewLaunch(w.client, w.cloud, w.recorder, w.clock, &failures{}, newLaunchMetrics())
	r.reg = nodeclaim.NewRegistration(r.cache, w.recorder, w.clock, 15*time.Minute)
	r.claim, r.node = w.joined(r.launch, r.pool)
	return r
}

var _ = Describe("registration", func() {
	It("adopts the Node of a launched NodeClaim, initializes it once ready, and deletes a NodeClaim whose Node never comes", func() {
		r := newRegistering()
		w, pool, launch, writes, reg, claim, node := r.world, r.pool, r.launch, r.cache, r.reg, r.claim, r.node
		w.seen(node)
		_, err := reg.Reconcile(w.ctx, request(claim))
		Expect(err).NotTo(HaveOccurred())
		w.get(node)
		Expect(node.Labels).To(HaveKeyWithValue(v1.NodePoolLabelKey, pool.Name))
		Expect(node.Labels).To(HaveKeyWithValue(v1.RegisteredLabelKey, "true"))
		Expect(node.Spec.Taints).To(ContainElement(HaveField("Key", "dedicated")), "the claim's taint on")
		Expect(node.Spec.Taints).NotTo(ContainElement(HaveField("Key", v1.UnregisteredTaintKey)), "the unregistered taint off")
		Expect(node.Finalizers).To(ContainElement(v1.TerminationFinalizer))
		w.get(claim)
		Expect(claim.Status.NodeName).To(Equal(node.Name))
		Expect(meta.FindStatusCondition(claim.Status.Conditions, v1.ConditionInitialized)).To(And(HaveField("Status", metav1.ConditionFalse),
			HaveField("Message", "node is not Ready")), "not Ready yet, and the claim says so in the write that registers it")
		Expect(writes.statusWrites).To(Equal(1))
		w.seen(claim)
		_, err = reg.Reconcile(w.ctx, request(claim))
		Expect(err).NotTo(HaveOccurred())
		Expect(writes.statusWrites).To(Equal(1), "the same reason is not written again")

		// The node turns Ready, and the not-ready taint the API server put on it goes, as the node lifecycle controller does.
		node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
		node.Status.Allocatable = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")}
		Expect(env.Client.Status().Update(w.ctx, node)).To(Succeed())
		node.Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "batch", Effect: corev1.TaintEffectNoSchedule}}
		Expect(env.Client.Update(w.ctx, node)).To(Succeed())
		w.seen(node)
		w.seen(claim)
		w.clock.Step(time.Minute)
		_, err = reg.Reconcile(w.ctx, request(claim))
		Expect(err).NotTo(HaveOccurred())
		w.get(claim)
		initialized := meta.FindStatusCondition(claim.Status.Conditions, v1.ConditionInitialized)
		Expect(initialized.Status).To(Equal(metav1.ConditionTrue))
		Expect(initialized.LastTransitionTime.Time).To(BeTemporally("==", w.clock.Now()))
		w.get(node)
		Expect(node.Labels).To(HaveKeyWithValue(v1.InitializedLabelKey, "true"))
		Expect(writes.nodeWrites).To(Equal(2), "adopted, then marked initialized once Ready")
		Expect(writes.statusWrites).To(Equal(2))

		// A second claim whose Node never registers.
		lonely := w.newClaim(pool, "default")
		_, err = launch.Reconcile(w.ctx, request(lonely))
		Expect(err).NotTo(HaveOccurred())
		w.seen(lonely)
		result, err := reg.Reconcile(w.ctx, request(lonely))
		Expect(err).NotTo(HaveOccurred())
		Expect(result.RequeueAfter).To(Equal(15*time.Minute), "woken when the TTL runs out")
		w.clock.Step(15 * time.Minute)
		_, err = reg.Reconcile(w.ctx, request(lonely))
		Expect(err).NotTo(HaveOccurred())
		w.get(lonely)
		Expect(lonely.DeletionTimestamp).NotTo(BeNil())
		Expect(w.events()).To(ContainElement(ContainSubstring("RegistrationTimeout")))
	})
})

// lagging serves a NodeClaim as a lagging informer cache would (the copy in
// stale, when set) and counts the writes to Nodes and to NodeClaims' status.
type lagging struct {
	client.Client
	stale        *v1.NodeClaim
	nodeWrites   int
	statusWrites int
}

func (l *lagging) Status() client.SubResourceWriter {
	return &countedStatus{SubResourceWriter: l.Client.Status(), writes: &l.statusWrites}
}

type countedStatus struct {
	client.SubResourceWriter
	writes *int
}

func (c *countedStatus) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	*c.writes++
	return c.SubResourceWriter.Patch(ctx, obj, patch, opts...)
}

func (l *lagging) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if claim, ok := obj.(*v1.NodeClaim); ok && l.stale != nil && key.Name == l.stale.Name {
		l.stale.DeepCopyInto(claim)
		return nil
	}
	return l.Client.Get(ctx, key, obj, opts...)
}

func (l *lagging) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	if _, ok := obj.(*corev1.Node); ok {
		l.nodeWrites++
	}
	return l.Client.Patch(ctx, obj, patch, opts...)
}

var _ = Describe("registration on a lagging cache", func() {
	It("registers and initializes a node once, counting and logging it once, when a reconcile reads the NodeClaim from before", func() {
		r := newRegistering()
		w, pool, cache, reg, claim, node := r.world, r.pool, r.cache, r.reg, r.claim, r.node
		registry := prometheus.NewRegistry()
		reg.Metrics = metrics.NewLifecycle(registry)

		node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
		Expect(env.Client.Status().Update(w.ctx, node)).To(Succeed())
		// Ready: the not-ready taint the API server put on goes.
		node.Spec.Taints = []corev1.Taint{v1.UnregisteredNoExecuteTaint}
		Expect(env.Client.Update(w.ctx, node)).To(Succeed())
		w.seen(node)
		before := claim.DeepCopy()

		_, err := reg.Reconcile(w.ctx, request(claim))
		Expect(err).NotTo(HaveOccurred())
		w.get(claim)
		Expect(meta.IsStatusConditionTrue(claim.Status.Conditions, v1.ConditionInitialized)).To(BeTrue())
		Expect(meta.IsStatusConditionTrue(claim.Status.Conditions, v1.ConditionRegistered)).To(BeTrue())
		Expect(meta.IsStatusConditionTrue(claim.Status.Conditions, v1.ConditionReady)).To(BeTrue())
		w.get(node)
		Expect(node.Labels).To(And(HaveKeyWithValue(v1.RegisteredLabelKey, "true"), HaveKeyWithValue(v1.InitializedLabelKey, "true")))
		Expect(cache.nodeWrites).To(Equal(1), "a node that joins ready is adopted and marked initialized in one write")
		Expect(cache.statusWrites).To(Equal(1), "and its NodeClaim registered and initialized in one")

		// The Node is current in the cache, the NodeClaim is not yet.
		w.seen(node)
		cache.stale = before
		_, err = reg.Reconcile(w.ctx, request(claim))
		Expect(err).NotTo(HaveOccurred())
		Expect(cache.nodeWrites).To(Equal(1), "nothing written again for a step already done")
		Expect(cache.statusWrites).To(Equal(1))
		created, _ := test.Metric(registry, "karpenter_nodes_created_total", map[string]string{"nodepool": pool.Name})
		Expect(created).To(Equal(1.0), "the node is counted once")

		// Once the cache shows the conditions, reconciles read them from there.
		cache.stale = nil
		w.seen(claim)
		_, err = reg.Reconcile(w.ctx, request(claim))
		Expect(err).NotTo(HaveOccurred())
		Expect(cache.nodeWrites).To(Equal(1))
		Expect(cache.statusWrites).To(Equal(1))
	})
})

var _ = Describe("registration on a stale NodeClaim", func() {
	It("does not drop a condition written since the copy it read", func() {
		r := newRegistering()
		w, cache, reg, claim, node := r.world, r.cache, r.reg, r.claim, r.node
		w.seen(node)
		before := claim.DeepCopy()
		_, err := reg.Reconcile(w.ctx, request(claim))
		Expect(err).NotTo(HaveOccurred())
		w.get(claim)
		Expect(meta.IsStatusConditionTrue(claim.Status.Conditions, v1.ConditionRegistered)).To(BeTrue())

		// A reconcile reads the NodeClaim from before it was registered; the
		// node is still not Ready, so initialization has a reason to write.
		cache.stale = before
		result, err := reg.Reconcile(w.ctx, request(claim))
		Expect(err).NotTo(HaveOccurred())
		Expect(result.Requeue).To(BeTrue(), "the stale write is refused and the reconcile asked again")
		w.get(claim)
		Expect(meta.IsStatusConditionTrue(claim.Status.Conditions, v1.ConditionRegistered)).To(BeTrue(), "Registered is still there")
	})
})

var _ = Describe("termination and garbage collection", func() {
	It("terminates what was launched for a NodeClaim that never learned its instance before letting it go", func() {
		w := newWorld()
		pool := w.newPool()
		term := nodeclaim.NewTermination(w.client, w.cloud, w.recorder, w.clock)
		claim := w.newClaim(pool, "default")
		// The launch made an instance, but its answer never reached the NodeClaim.
		w.cloud.LaunchThenFail = []error{&cloudprovider.RetryableError{Cause: cloudprovider.Cause{Code: "InternalError"}}}
		_, err := w.cloud.Create(w.ctx, claim)
		Expect(err).To(HaveOccurred())
		Expect(w.cloud.Instances()).To(HaveLen(1))

		Expect(env.Client.Delete(w.ctx, claim)).To(Succeed())
		w.seen(claim)
		_, err = term.ReconcileClaim(w.ctx, request(claim))
		Expect(err).NotTo(HaveOccurred())
		Expect(w.cloud.Instances()).To(BeEmpty(), "the instance is terminated before the NodeClaim goes")
		w.gone(claim)
	})

	It("keeps the NodeClaim while the cloud cannot say whether its instance is gone", func() {
		w := newWorld()
		pool := w.newPool()
		term := nodeclaim.NewTermination(w.client, w.cloud, w.recorder, w.clock)
		claim := w.newClaim(pool, "default")
		w.cloud.DeleteError = &cloudprovider.RetryableError{Cause: cloudprovider.Cause{Code: "RequestLimitExceeded"}}
		Expect(env.Client.Delete(w.ctx, claim)).To(Succeed())
		w.seen(claim)
		_, err := term.ReconcileClaim(w.ctx, request(claim))
		Expect(err).To(HaveOccurred())
		w.get(claim)
		Expect(claim.Finalizers).To(ContainElement(v1.TerminationFinalizer))
	})

	It("keeps a node while an evicted pod has its grace period to stop, counted on the controller's clock, not the API server's", func() {
		w := newWorld()
		term := nodeclaim.NewTermination(w.client, w.cloud, w.recorder, w.clock)
		// The controller's clock runs an hour ahead of the API server's:
		// every deletionTimestamp the server writes is in its past.
		w.clock.Step(time.Hour)
		node, pod := w.nodeWithPod(func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = ptr.To[int64](30) })
		// No kubelet here: the pod stays terminating, as on a node whose
		// kubelet takes its grace period.
		Expect(env.Client.Delete(w.ctx, pod)).To(Succeed())
		Expect(env.Client.Delete(w.ctx, node)).To(Succeed())
		w.seen(pod)
		w.seen(node)

		// As the controller would: a write that conflicts is reconciled again.
		reconcile := func() {
			Eventually(func() error { _, err := term.ReconcileNode(w.ctx, request(node)); return err }).Should(Succeed())
		}
		reconcile()
		w.clock.Step(29 * time.Second)
		reconcile()
		w.get(node)
		Expect(node.Finalizers).To(ContainElement(v1.TerminationFinalizer), "the pod has a second of its 30 left")

		w.clock.Step(time.Second)
		reconcile()
		w.gone(node)
	})

	It("stamps when the drain ends and deletes each pod early enough to have its whole grace period by then, PodDisruptionBudget or do-not-disrupt", func() {
		w := newWorld()
		term := nodeclaim.NewTermination(w.client, w.cloud, w.recorder, w.clock)
		claim := w.newClaim(w.newPool(), "default", func(c *v1.NodeClaim) {
			c.Spec.TerminationGracePeriod = &metav1.Duration{Duration: 2 * time.Minute}
		})
		claim.Status.ProviderID = "fake:///zone-a/i-draining"
		Expect(env.Client.Status().Update(w.ctx, claim)).To(Succeed())
		node, slow := w.nodeWithPod(func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = ptr.To[int64](300) })
		node.Spec.ProviderID = claim.Status.ProviderID
		Expect(env.Client.Update(w.ctx, node)).To(Succeed())
		guarded, _ := w.guardedPodOn(node, func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = ptr.To[int64](30) })
		pinned := w.podOn(node, func(p *corev1.Pod) {
			p.Annotations = map[string]string{v1.DoNotDisruptAnnotation: "true"}
			p.Spec.TerminationGracePeriodSeconds = ptr.To[int64](10)
		})

		Expect(env.Client.Delete(w.ctx, claim)).To(Succeed())
		w.seen(claim)
		w.seen(node)
		Eventually(func() error { _, err := term.ReconcileClaim(w.ctx, request(claim)); return err }).Should(Succeed())
		w.get(claim)
		Expect(claim.Annotations).To(HaveKeyWithValue(v1.TerminationTimestampAnnotation,
			claim.DeletionTimestamp.Add(2*time.Minute).UTC().Format(time.RFC3339)), "deletion plus terminationGracePeriod")
		deadline, err := time.Parse(time.RFC3339, claim.Annotations[v1.TerminationTimestampAnnotation])
		Expect(err).NotTo(HaveOccurred())
		w.seen(claim)
		w.seen(node)

		// What each pod looks like after a reconcile at deadline-before.
		drainAt := func(before time.Duration) {
			w.clock.SetTime(deadline.Add(-before))
			Eventually(func() error { _, err := term.ReconcileNode(w.ctx, request(node)); return err }).Should(Succeed())
			for _, p := range []*corev1.Pod{slow, guarded, pinned} {
				w.get(p)
				w.seen(p)
			}
		}
		deletedWith := func(p *corev1.Pod) *int64 {
			if p.DeletionTimestamp == nil {
				return nil
			}
			return p.DeletionGracePeriodSeconds
		}

		drainAt(100 * time.Second)
		Expect(deletedWith(slow)).To(HaveValue(BeEquivalentTo(100)), "300 s of grace would not fit: deleted with the 100 s left")
		Expect(deletedWith(guarded)).To(BeNil(), "its budget blocks the eviction, and its 30 s fit")
		Expect(deletedWith(pinned)).To(BeNil(), "do-not-disrupt: not evicted")

		drainAt(31 * time.Second)
		Expect(deletedWith(guarded)).To(BeNil(), "31 s left, it needs 30")
		Expect(deletedWith(pinned)).To(BeNil())

		drainAt(30 * time.Second)
		Expect(deletedWith(guarded)).To(HaveValue(BeEquivalentTo(30)), "deleted in time for its whole grace period, budget or not")
		Expect(deletedWith(pinned)).To(BeNil())

		drainAt(10 * time.Second)
		Expect(deletedWith(pinned)).To(HaveValue(BeEquivalentTo(10)))
		w.get(node)
		Expect(node.Finalizers).To(ContainElement(v1.TerminationFinalizer), "the pods are still stopping")

		// At the deadline what is still there goes at once.
		w.clock.SetTime(deadline)
		Eventually(func() error { _, err := term.ReconcileNode(w.ctx, request(node)); return err }).Should(Succeed())
		for _, p := range []*corev1.Pod{slow, guarded, pinned} {
			w.gone(p)
		}
		Eventually(func() error { _, err := term.ReconcileNode(w.ctx, request(node)); return err }).Should(Succeed())
		w.gone(node)
	})

	It("deletes the NodeClaim of a Node deleted first at once, so that its termination timestamp is stamped", func() {
		w := newWorld()
		term := nodeclaim.NewTermination(w.client, w.cloud, w.recorder, w.clock)
		claim := w.newClaim(w.newPool(), "default", func(c *v1.NodeClaim) {
			c.Spec.TerminationGracePeriod = &metav1.Duration{Duration: time.Hour}
		})
		claim.Status.ProviderID = "fake:///zone-a/i-deleted-node"
		Expect(env.Client.Status().Update(w.ctx, claim)).To(Succeed())
		node, _ := w.nodeWithPod()
		node.Spec.ProviderID = claim.Status.ProviderID
		Expect(env.Client.Update(w.ctx, node)).To(Succeed())
		Expect(env.Client.Delete(w.ctx, node)).To(Succeed())
		w.seen(claim)
		w.seen(node)

		Eventually(func() error { _, err := term.ReconcileNode(w.ctx, request(node)); return err }).Should(Succeed())
		w.get(claim)
		Expect(claim.DeletionTimestamp).NotTo(BeNil(), "deleted while its node drains, not after")
		w.seen(claim)
		Eventually(func() error { _, err := term.ReconcileClaim(w.ctx, request(claim)); return err }).Should(Succeed())
		w.get(claim)
		Expect(claim.Annotations).To(HaveKeyWithValue(v1.TerminationTimestampAnnotation, claim.DeletionTimestamp.Add(time.Hour).UTC().Format(time.RFC3339)))
		w.get(node)
		Expect(node.Finalizers).To(ContainElement(v1.TerminationFinalizer), "the node still drains")
	})

	It("holds a pod protected do-not-disrupt for a while until it has run that long, and warns of a value that does not parse", func() {
		w := newWorld()
		term := nodeclaim.NewTermination(w.client, w.cloud, w.recorder, w.clock)
		node, job := w.nodeWithPod(func(p *corev1.Pod) { p.Annotations = map[string]string{v1.DoNotDisruptAnnotation: "1h"} })
		job.Status.StartTime = &metav1.Time{Time: w.clock.Now().Add(-30 * time.Minute)}
		Expect(env.Client.Status().Update(w.ctx, job)).To(Succeed())
		typo := w.podOn(node, func(p *corev1.Pod) { p.Annotations = map[string]string{v1.DoNotDisruptAnnotation: "soon"} })
		Expect(env.Client.Delete(w.ctx, node)).To(Succeed())
		w.seen(job)
		w.seen(typo)
		w.seen(node)
		drain := func() {
			Eventually(func() error { _, err := term.ReconcileNode(w.ctx, request(node)); return err }).Should(Succeed())
			w.get(job)
			w.get(typo)
		}

		drain()
		Expect(job.DeletionTimestamp).To(BeNil(), "30 of its 60 minutes left")
		Expect(typo.DeletionTimestamp).NotTo(BeNil(), "a value that does not parse protects nothing")
		Expect(w.events()).To(ContainElement(And(ContainSubstring("InvalidDoNotDisruptAnnotation"), ContainSubstring(`"soon"`), ContainSubstring(`such as "4h"`))))
		w.seen(job)
		w.clock.Step(30 * time.Minute)
		drain()
		Expect(job.DeletionTimestamp).NotTo(BeNil(), "its hour is over")
	})

	It("counts eviction requests by answer, and each drained node once with how long it lived, by Karpenter's names", func() {
		w := newWorld()
		reg := prometheus.NewRegistry()
		term := nodeclaim.NewTermination(w.client, w.cloud, w.recorder, w.clock)
		term.Metrics = metrics.NewLifecycle(reg)
		node, free := w.nodeWithPod()
		node.Labels = map[string]string{v1.NodePoolLabelKey: "counted"}
		Expect(env.Client.Update(w.ctx, node)).To(Succeed())
		guarded, pdb := w.guardedPodOn(node)
		// Two seconds of the API server's between creation and deletion
		// (its timestamps are whole seconds), so that the node's lifetime
		// and its termination time differ.
		Eventually(time.Now, 5*time.Second).Should(BeTemporally(">=", node.CreationTimestamp.Add(2*time.Second)))
		Expect(env.Client.Delete(w.ctx, node)).To(Succeed())
		w.seen(free)
		w.seen(guarded)
		w.seen(node)
		counted := func(name string, labels map[string]string) float64 { v, _ := test.Metric(reg, name, labels); return v }
		drain := func() {
			Eventually(func() error { _, err := term.ReconcileNode(w.ctx, request(node)); return err }).Should(Succeed())
		}

		drain()
		Expect(counted("karpenter_pods_eviction_requests_total", map[string]string{"code": "200"})).To(BeEquivalentTo(1))
		Expect(counted("karpenter_pods_eviction_requests_total", map[string]string{"code": "429"})).To(BeEquivalentTo(1), "the budget refused")
		Expect(env.Client.Delete(w.ctx, pdb)).To(Succeed())
		w.gone(pdb)
		w.clock.Step(30 * time.Second)
		drain()
		Expect(counted("karpenter_pods_eviction_requests_total", map[string]string{"code": "200"})).To(BeEquivalentTo(2))
		w.clock.Step(30 * time.Second)
		for _, p := range []*corev1.Pod{free, guarded} {
			w.get(p)
			w.seen(p)
		}
		drain()
		w.gone(node)
		Expect(counted("karpenter_pods_drained_total", map[string]string{"reason": "Forceful Termination"})).To(BeEquivalentTo(2),
			"both evicted pods, under Karpenter's reason for a node deleted without a DisruptionReason")
		Expect(counted("karpenter_nodes_drained_total", map[string]string{"nodepool": "counted"})).To(BeEquivalentTo(1))
		Expect(counted("karpenter_nodes_terminated_total", map[string]string{"nodepool": "counted"})).To(BeEquivalentTo(1))
		Expect(counted("karpenter_nodes_lifetime_duration_seconds", map[string]string{"nodepool": "counted"})).To(BeEquivalentTo(1), "one node's lifetime observed")
		families, err := reg.Gather()
		Expect(err).NotTo(HaveOccurred())
		var lived float64
		for _, f := range families {
			if f.GetName() == "karpenter_nodes_lifetime_duration_seconds" {
				lived = f.Metric[0].GetHistogram().GetSampleSum()
			}
		}
		Expect(lived).To(Equal(w.clock.Since(node.CreationTimestamp.Time).Seconds()), "from its creation, on the controller's clock")
	})

	It("counts the pods it evicts by the NodeClaim's DisruptionReason", func() {
		w := newWorld()
		reg := prometheus.NewRegistry()
		term := nodeclaim.NewTermination(w.client, w.cloud, w.recorder, w.clock)
		term.Metrics = metrics.NewLifecycle(reg)
		claim := w.newClaim(w.newPool(), "default")
		claim.Status.ProviderID = "fake:///zone-a/i-drifted"
		meta.SetStatusCondition(&claim.Status.Conditions, metav1.Condition{Type: v1.ConditionDisruptionReason, Status: metav1.ConditionTrue,
			Reason: "Drifted", Message: "Drifted node replaced"})
		Expect(env.Client.Status().Update(w.ctx, claim)).To(Succeed())
		node, _ := w.nodeWithPod()
		node.Spec.ProviderID = claim.Status.ProviderID
		Expect(env.Client.Update(w.ctx, node)).To(Succeed())
		Expect(env.Client.Delete(w.ctx, claim)).To(Succeed())
		Expect(env.Client.Delete(w.ctx, node)).To(Succeed())
		w.seen(claim)
		w.seen(node)
		Eventually(func() error { _, err := term.ReconcileNode(w.ctx, request(node)); return err }).Should(Succeed())
		counted := func(reason string) float64 {
			v, _ := test.Metric(reg, "karpenter_pods_drained_total", map[string]string{"reason": reason})
			return v
		}
		Expect(counted("Drifted")).To(BeEquivalentTo(1))
		Expect(counted("Forceful Termination")).To(BeZero())
	})

	It("evicts system-critical pods last, once the others are gone", func() {
		w := newWorld()
		term := nodeclaim.NewTermination(w.client, w.cloud, w.recorder, w.clock)
		node, app := w.nodeWithPod(func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = ptr.To[int64](30) })
		dns := w.podOn(node, func(p *corev1.Pod) {
			p.Namespace = "kube-system"
			p.Spec.PriorityClassName = "system-cluster-critical"
		})
		Expect(env.Client.Delete(w.ctx, node)).To(Succeed())
		w.seen(node)
		drain := func() {
			Eventually(func() error { _, err := term.ReconcileNode(w.ctx, request(node)); return err }).Should(Succeed())
			w.get(app)
			w.seen(app)
			w.get(dns)
			w.seen(dns)
		}

		drain()
		Expect(app.DeletionTimestamp).NotTo(BeNil())
		Expect(dns.DeletionTimestamp).To(BeNil(), "it waits while another pod is on its way out")
		w.clock.Step(29 * time.Second)
		drain()
		Expect(dns.DeletionTimestamp).To(BeNil())
		// Nothing runs the pod: its grace period over, it counts as gone.
		w.clock.Step(time.Second)
		drain()
		Expect(dns.DeletionTimestamp).NotTo(BeNil())
	})

	It("looks at the API server, not only the cache, before a drained node goes", func() {
		w := newWorld()
		// A cache that has not seen the pod bound to the node yet.
		stale := &hidingPods{Client: w.client, hidden: map[string]bool{}}
		term := nodeclaim.NewTermination(stale, w.cloud, w.recorder, w.clock)
		term.Reader = env.Client
		node, pod := w.nodeWithPod()
		stale.hidden[pod.Name] = true
		Expect(env.Client.Delete(w.ctx, node)).To(Succeed())
		w.seen(pod)
		w.seen(node)

		Eventually(func() error { _, err := term.ReconcileNode(w.ctx, request(node)); return err }).Should(Succeed())
		w.get(node)
		Expect(node.Finalizers).To(ContainElement(v1.TerminationFinalizer), "the node stays while its pod is there")
		w.get(pod)
		Expect(pod.DeletionTimestamp).NotTo(BeNil(), "the pod the cache did not show was evicted")
	})

	It("relabels a reserved NodeClaim and its Node On-Demand once the instance runs outside its reservation", func() {
		w := newWorld()
		pool := w.newPool()
		gc := nodeclaim.NewGarbageCollection(w.client, w.cloud, w.clock)
		gc.ReservationLabels = []string{"example.com/reservation-id"}
		reserved := map[string]string{v1.CapacityTypeLabelKey: v1.CapacityTypeReserved, "example.com/reservation-id": "r-1"}
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{GenerateName: "reserved-", Labels: map[string]string{"example.com/team": "a"}}}
		for k, v := range reserved {
			node.Labels[k] = v
		}
		Expect(env.Client.Create(w.ctx, node)).To(Succeed())
		claims := map[string]*v1.NodeClaim{}
		for _, still := range []bool{true, false} {
			claim := w.newClaim(pool, "default", func(c *v1.NodeClaim) {
				for k, v := range reserved {
					c.Labels[k] = v
				}
			})
			id := fmt.Sprintf("i-still-%t", still)
			claim.Status.ProviderID = "fake:///zone-a/" + id
			if !still {
				claim.Status.NodeName = node.Name
			}
			Expect(env.Client.Status().Update(w.ctx, claim)).To(Succeed())
			w.seen(claim)
			ct := v1.CapacityTypeOnDemand
			if still {
				ct = v1.CapacityTypeReserved
			}
			w.cloud.Add(&cloudprovider.Instance{ID: id, ProviderID: claim.Status.ProviderID, CapacityType: ct, LaunchTime: w.clock.Now(),
				Labels: map[string]string{v1.NodeClaimLabelKey: claim.Name}})
			claims[fmt.Sprint(still)] = claim
		}

		Expect(gc.Collect(w.ctx)).To(Succeed())
		left := claims["false"]
		w.get(left)
		Expect(left.Labels).To(HaveKeyWithValue(v1.CapacityTypeLabelKey, v1.CapacityTypeOnDemand))
		Expect(left.Labels).NotTo(HaveKey("example.com/reservation-id"))
		Expect(left.Labels).To(HaveKeyWithValue(v1.NodePoolLabelKey, pool.Name))
		w.get(node)
		Expect(node.Labels).To(HaveKeyWithValue(v1.CapacityTypeLabelKey, v1.CapacityTypeOnDemand))
		Expect(node.Labels).NotTo(HaveKey("example.com/reservation-id"))
		Expect(node.Labels).To(HaveKeyWithValue("example.com/team", "a"))
		still := claims["true"]
		w.get(still)
		Expect(still.Labels).To(HaveKeyWithValue(v1.CapacityTypeLabelKey, v1.CapacityTypeReserved), "still in its reservation")
		Expect(still.Labels).To(HaveKeyWithValue("example.com/reservation-id", "r-1"))
	})

	It("terminates instances whose NodeClaim is gone after the grace period, and deletes NodeClaims whose instance is gone", func() {
		w := newWorld()
		pool := w.newPool()
		gc := nodeclaim.NewGarbageCollection(w.client, w.cloud, w.clock)
		orphan := &cloudprovider.Instance{ID: "i-orphan", ProviderID: "fake:///zone-a/i-orphan", LaunchTime: w.clock.Now(),
			Labels: map[string]string{v1.NodeClaimLabelKey: "long-gone"}}
		w.cloud.Add(orphan)
		claim := w.newClaim(pool, "default")
		claim.Status.ProviderID = "fake:///zone-a/i-vanished"
		Expect(env.Client.Status().Update(w.ctx, claim)).To(Succeed())
		w.seen(claim)

		Expect(gc.Collect(w.ctx)).To(Succeed())
		Expect(w.cloud.Instances()).To(HaveLen(1), "a fresh instance may be a launch in flight")
		w.get(claim)
		Expect(claim.DeletionTimestamp).NotTo(BeNil(), "its instance is gone")

		w.clock.Step(gc.Grace)
		Expect(gc.Collect(w.ctx)).To(Succeed())
		Expect(w.cloud.Instances()).To(BeEmpty())
	})
})
