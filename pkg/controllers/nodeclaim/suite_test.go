package nodeclaim_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider/fake"
	"github.com/backstop-sh/backstop/pkg/controllers/nodeclaim"
	"github.com/backstop-sh/backstop/pkg/scheduling"
	"github.com/backstop-sh/backstop/test"
)

var env = test.SuiteEnvironment()

func TestNodeClaim(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "NodeClaim lifecycle")
}

// world is what one spec runs against: the real API server through a cached
// client with the lifecycle's indexes, the fake cloud and a fake clock.
type world struct {
	ctx      context.Context
	client   client.Client
	cloud    *fake.CloudProvider
	clock    *clocktesting.FakeClock
	recorder *events.FakeRecorder
}

// newWorld starts a manager that only runs its cache (no controller), so
// specs call Reconcile themselves and decide when time passes.
func newWorld() *world {
	ctx, mgr := test.CacheManager(env, func(ctx context.Context, mgr manager.Manager) error {
		if err := nodeclaim.IndexProviderIDs(ctx, mgr); err != nil {
			return err
		}
		return nodeclaim.IndexPodsByNode(ctx, mgr)
	})
	clk := clocktesting.NewFakeClock(time.Now().Truncate(time.Second))
	cloud := fake.New(clk)
	cloud.Types = []*scheduling.InstanceType{{
		Name:         "m5.large",
		Requirements: scheduling.NewRequirements(scheduling.MustRequirement(corev1.LabelArchStable, v1.OpIn, "amd64")),
		Capacity:     scheduling.Resources{CPU: 2000, Memory: 8 << 30, Pods: 29},
		Offerings:    []scheduling.Offering{{Zone: "zone-a", CapacityType: v1.CapacityTypeSpot, Price: 0.03, Available: true}},
	}}
	return &world{ctx: ctx, client: mgr.GetClient(), cloud: cloud, clock: clk, recorder: events.NewFakeRecorder(100)}
}

// seen waits until the cache has the object as the API server has it.
func (w *world) seen(obj client.Object) {
	Eventually(func(g Gomega) {
		current := obj.DeepCopyObject().(client.Object)
		g.Expect(env.Client.Get(w.ctx, client.ObjectKeyFromObject(obj), current)).To(Succeed())
		cached := obj.DeepCopyObject().(client.Object)
		g.Expect(w.client.Get(w.ctx, client.ObjectKeyFromObject(obj), cached)).To(Succeed())
		g.Expect(cached.GetResourceVersion()).To(Equal(current.GetResourceVersion()))
	}).Should(Succeed())
}

// gone waits until the cache no longer has the object.
func (w *world) gone(obj client.Object) {
	Eventually(func() bool {
		return apierrors.IsNotFound(w.client.Get(w.ctx, client.ObjectKeyFromObject(obj), obj.DeepCopyObject().(client.Object)))
	}).Should(BeTrue())
}

// events drains the recorded events.
func (w *world) events() []string { return test.DrainEvents(w.recorder) }

func request(obj client.Object) reconcile.Request {
	return reconcile.Request{NamespacedName: client.ObjectKeyFromObject(obj)}
}

// failures records what LaunchFailed and Launched were told.
type failures struct {
	reasons  []string
	launched map[string]string
}

func (f *failures) LaunchFailed(_ *v1.NodeClaim, reason string) {
	f.reasons = append(f.reasons, reason)
}

func (f *failures) Launched(claim *v1.NodeClaim, providerID string) {
	if f.launched == nil {
		f.launched = map[string]string{}
	}
	f.launched[claim.Name] = providerID
}

// outcomes records what a RegistrationOutcomes was told.
type outcomes struct{ registered, failed []string }

func (o *outcomes) Registered(pool string) { o.registered = append(o.registered, pool) }
func (o *outcomes) Failed(pool, reason, message string) {
	o.failed = append(o.failed, pool+": "+reason+": "+message)
}

// newPool creates a NodePool with a unique name.
func (w *world) newPool() *v1.NodePool {
	pool := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{GenerateName: "pool-"}, Spec: v1.NodePoolSpec{Template: v1.NodeClaimTemplate{
		Spec: v1.NodeClaimTemplateSpec{NodeClassRef: &v1.NodeClassReference{Group: "karpenter.k8s.aws", Kind: "EC2NodeClass", Name: "default"}},
	}}}
	Expect(env.Client.Create(w.ctx, pool)).To(Succeed())
	return pool
}

// newClaim creates a NodeClaim of the pool, with the termination finalizer.
func (w *world) newClaim(pool *v1.NodePool, class string, mutate ...func(*v1.NodeClaim)) *v1.NodeClaim {
	claim := &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{GenerateName: pool.Name + "-", Labels: map[string]string{v1.NodePoolLabelKey: pool.Name},
			Finalizers: []string{v1.TerminationFinalizer}},
		Spec: v1.NodeClaimSpec{
			NodeClassRef: &v1.NodeClassReference{Group: "karpenter.k8s.aws", Kind: "EC2NodeClass", Name: class},
			Requirements: []v1.NodeSelectorRequirementWithMinValues{{Key: v1.CapacityTypeLabelKey, Operator: v1.OpIn, Values: []string{v1.CapacityTypeSpot}}},
			Taints:       []corev1.Taint{{Key: "dedicated", Value: "batch", Effect: corev1.TaintEffectNoSchedule}},
		},
	}
	for _, m := range mutate {
		m(claim)
	}
	Expect(env.Client.Create(w.ctx, claim)).To(Succeed())
	w.seen(claim)
	return claim
}

func (w *world) get(obj client.Object) {
	Expect(env.Client.Get(w.ctx, client.ObjectKeyFromObject(obj), obj)).To(Succeed())
}

func newLaunchMetrics() *nodeclaim.LaunchMetrics {
	return nodeclaim.NewLaunchMetrics(prometheus.NewRegistry())
}

// nodeWithPod creates a Node held by the termination finalizer and a pod
// bound to it; nothing runs the pod, so once deleted it stays terminating.
func (w *world) nodeWithPod(mutate ...func(*corev1.Pod)) (*corev1.Node, *corev1.Pod) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{GenerateName: "draining-", Finalizers: []string{v1.TerminationFinalizer}}}
	Expect(env.Client.Create(w.ctx, node)).To(Succeed())
	return node, w.podOn(node, mutate...)
}

// podOn creates a pod bound to the node.
func (w *world) podOn(node *corev1.Node, mutate ...func(*corev1.Pod)) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", GenerateName: "on-" + node.Name + "-"},
		Spec:       corev1.PodSpec{NodeName: node.Name, Containers: []corev1.Container{{Name: "c", Image: "c"}}},
	}
	for _, m := range mutate {
		m(pod)
	}
	Expect(env.Client.Create(w.ctx, pod)).To(Succeed())
	DeferCleanup(func() { _ = env.Client.Delete(w.ctx, pod, client.GracePeriodSeconds(0)) })
	return pod
}

// guardedPodOn creates a Running, Ready pod on the node and a
// PodDisruptionBudget, counted as kube-controller-manager would, that
// allows it no disruption: the API server refuses to evict it.
func (w *world) guardedPodOn(node *corev1.Node, mutate ...func(*corev1.Pod)) (*corev1.Pod, *policyv1.PodDisruptionBudget) {
	pod := w.podOn(node, append([]func(*corev1.Pod){func(p *corev1.Pod) { p.Labels = map[string]string{"app": "guarded-" + node.Name} }}, mutate...)...)
	// The API server lets a pod that is Pending, or not Ready, be evicted
	// whatever its budget.
	pod.Status.Phase = corev1.PodRunning
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	Expect(env.Client.Status().Update(w.ctx, pod)).To(Succeed())
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, GenerateName: "guarded-"},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromInt32(1)), Selector: &metav1.LabelSelector{MatchLabels: pod.Labels}}}
	Expect(env.Client.Create(w.ctx, pdb)).To(Succeed())
	DeferCleanup(func() { _ = env.Client.Delete(w.ctx, pdb) })
	pdb.Status = policyv1.PodDisruptionBudgetStatus{ObservedGeneration: pdb.Generation, CurrentHealthy: 1, DesiredHealthy: 1, ExpectedPods: 1}
	Expect(env.Client.Status().Update(w.ctx, pdb)).To(Succeed())
	return pod, pdb
}

// hidingPods is a cache that has not seen some pods yet: its lists leave
// them out.
type hidingPods struct {
	client.Client
	hidden map[string]bool
}

func (h *hidingPods) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if err := h.Client.List(ctx, list, opts...); err != nil {
		return err
	}
	if pods, ok := list.(*corev1.PodList); ok {
		kept := pods.Items[:0]
		for _, p := range pods.Items {
			if !h.hidden[p.Name] {
				kept = append(kept, p)
			}
		}
		pods.Items = kept
	}
	return nil
}
