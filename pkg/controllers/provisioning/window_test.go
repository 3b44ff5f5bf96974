package provisioning_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider/fake"
	"github.com/backstop-sh/backstop/pkg/controllers/provisioning"
	"github.com/backstop-sh/backstop/pkg/scheduling"
	"github.com/backstop-sh/backstop/test"
)

var _ = Describe("a batch", func() {
	var (
		ctx      context.Context
		clk      *clocktesting.FakeClock
		reg      *prometheus.Registry
		ns, pool string
		inFlight atomic.Int32
		most     atomic.Int32
		cloud    *fake.CloudProvider
		early    bool
		fill     bool
		// hidden are NodeClaims the provisioner's reads do not show yet,
		// as a cache that lags behind its own creates.
		hidden sync.Map
		// hideNew hides every NodeClaim created from its create on.
		hideNew atomic.Bool
		// reader reads through the provisioner's cache.
		reader client.Client
		// failFirst makes the next NodeClaim's launch fail before its
		// create even returns, as a fast launch controller can.
		failFirst atomic.Bool
		// While gated, NodeClaim creates wait for release to close.
		gated   atomic.Bool
		release chan struct{}
		// refuseNext makes the API server refuse the next NodeClaim create.
		refuseNext atomic.Bool
	)

	BeforeEach(func() {
		early, fill = false, false
		hidden.Clear()
		hideNew.Store(false)
		gated.Store(false)
		release = make(chan struct{})
		refuseNext.Store(false)
	})

	JustBeforeEach(func() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(context.Background())
		nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "window-"}}
		Expect(env.Client.Create(ctx, nsObj)).To(Succeed())
		ns = nsObj.Name
		// This provisioner sees only its namespace's pods, and leaves nothing
		// behind for the other specs: its pods and NodeClaims go when it stops.
		DeferCleanup(func() {
			cancel()
			bg := context.Background()
			Expect(env.Client.DeleteAllOf(bg, &corev1.Pod{}, client.InNamespace(ns), client.GracePeriodSeconds(0))).To(Succeed())
			var list v1.NodeClaimList
			Expect(env.Client.List(bg, &list, client.MatchingLabels{v1.NodePoolLabelKey: pool})).To(Succeed())
			for i := range list.Items {
				c := &list.Items[i]
				c.Finalizers = nil
				Expect(env.Client.Update(bg, c)).To(Succeed())
				Expect(client.IgnoreNotFound(env.Client.Delete(bg, c))).To(Succeed())
			}
		})
		mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: test.Scheme, Metrics: metricsserver.Options{BindAddress: "0"},
			Controller: config.Controller{SkipNameValidation: ptr.To(true)},
			Cache:      cache.Options{DefaultNamespaces: map[string]cache.Config{ns: {}}}})
		Expect(err).NotTo(HaveOccurred())
		clk = clocktesting.NewFakeClock(time.Now())
		reg = prometheus.NewRegistry()
		cloud = fake.New(clk)
		cloud.Types = []*scheduling.InstanceType{instanceType("small", 2), instanceType("large", 16)}
		// A client whose NodeClaim creates take a while, counting how many run at once.
		inFlight.Store(0)
		most.Store(0)
		slow := &countingClient{Client: mgr.GetClient(), inFlight: &inFlight, most: &most, hidden: &hidden, gated: &gated, release: release, refuseNext: &refuseNext}
		p := provisioning.New(slow, mgr.GetEventRecorder("karpenter"), cloud, clk, provisioning.NewMetrics(reg),
			provisioning.Options{BatchIdleDuration: time.Second, BatchMaxDuration: 10 * time.Second, Early: early, FillEarly: fill})
		failFirst.Store(false)
		slow.created = func(claim *v1.NodeClaim) {
			if hideNew.Load() {
				hidden.Store(claim.Name, true)
			}
			if failFirst.CompareAndSwap(true, false) {
				// What the launch controller does on a capacity error.
				p.LaunchFailed(claim, "InsufficientInstanceCapacity")
				Expect(env.Client.Delete(context.Background(), claim)).To(Succeed())
			}
		}
		Expect(p.Register(mgr)).To(Succeed())
		reader = mgr.GetClient()
		go func() {
			defer GinkgoRecover()
			Expect(mgr.Start(ctx)).To(Succeed())
		}()
		// Pods go to this spec's own pool, by a label only it has.
		poolObj := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{GenerateName: "window-"}, Spec: v1.NodePoolSpec{Template: v1.NodeClaimTemplate{
			ObjectMeta: v1.TemplateMetadata{Labels: map[string]string{"window": ns}},
			Spec:       v1.NodeClaimTemplateSpec{NodeClassRef: &v1.NodeClassReference{Group: "karpenter.k8s.aws", Kind: "EC2NodeClass", Name: "default"}},
		}}}
		Expect(env.Client.Create(ctx, poolObj)).To(Succeed())
		pool = poolObj.Name
		DeferCleanup(func() { Expect(env.Client.Delete(context.Background(), poolObj)).To(Succeed()) })
		// The pool must be in the provisioner's cache before the first pod.
		Eventually(func() error { return mgr.GetClient().Get(ctx, client.ObjectKeyFromObject(poolObj), &v1.NodePool{}) }).Should(Succeed())
	})

	// created is a new pod for this spec's pool that kube-scheduler has
	// not looked at yet; pending, one it found no room for.
	created := func(name, cpu string) *corev1.Pod {
		pod := unschedulablePod(ns, name, cpu)
		pod.Spec.NodeSelector = map[string]string{"window": ns}
		Expect(env.Client.Create(ctx, pod)).To(Succeed())
		return pod
	}
	pending := func(name, cpu string) *corev1.Pod {
		pod := created(name, cpu)
		markUnschedulable(ctx, env.Client, pod)
		return pod
	}
	batches := func() uint64 { return histogram(reg, "backstop_provisioner_batch_pods").GetSampleCount() }

	claims := func() int {
		var list v1.NodeClaimList
		Expect(env.Client.List(ctx, &list, client.MatchingLabels{v1.NodePoolLabelKey: pool})).To(Succeed())
		return len(list.Items)
	}

	// firstBatchFindsNoPool runs one batch while the EC2NodeClass is not
	// ready, as when pods come before it resolves, then makes it ready
	// without any pod changing: kube-scheduler does not rewrite a condition
	// that says the same.
	firstBatchFindsNoPool := func() {
		cloud.SetNotReady("default", "not resolved yet")
		pending("early", "1")
		Eventually(stepped(clk, batches), 5*time.Second, 20*time.Millisecond).Should(Equal(uint64(1)))
		Expect(claims()).To(BeZero())
		// Events are written asynchronously: under load the note lags the batch.
		Eventually(func() []string { return eventNotes(ctx, ns) }, 5*time.Second).Should(ContainElement(ContainSubstring("not resolved yet")))
		cloud.SetNotReady("default", "")
	}

	It("plans pods no pool could take again when a NodePool changes", func() {
		firstBatchFindsNoPool()
		poolObj := &v1.NodePool{}
		Expect(env.Client.Get(ctx, client.ObjectKey{Name: pool}, poolObj)).To(Succeed())
		// The NodePool status controller's part: the pool turns Ready.
		poolObj.Status.Conditions = []metav1.Condition{{Type: v1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Ready", LastTransitionTime: metav1.Now()}}
		Expect(env.Client.Status().Update(ctx, poolObj)).To(Succeed())
		// The window closes at once, the idle second since the last new pod
		// long past; a fake clock's timer still needs a step to fire. Less
		// than a second in all, far short of a re-check.
		Eventually(func() int {
			clk.Step(10 * time.Millisecond)
			return claims()
		}, 5*time.Second, 50*time.Millisecond).Should(Equal(1), func() string {
			return fmt.Sprintf("without waiting for a re-check; %d batches, events %v", batches(), eventNotes(ctx, ns))
		})
	})

	It("looks again at pods no pool could take even when nothing changes", func() {
		firstBatchFindsNoPool()
		Consistently(claims, 300*time.Millisecond).Should(BeZero())
		Eventually(func() int {
			clk.Step(time.Second)
			return claims()
		}, 5*time.Second, 50*time.Millisecond).Should(Equal(1), "re-checked within seconds of the clock")
	})

	It("is not held open by status updates of pods it already has, only by new pods", func() {
		pod := pending("seen", "1")
		Eventually(clk.Waiters).Should(BeNumerically(">=", 2), "the window opened")
		clk.Step(600 * time.Millisecond)
		// kube-scheduler rewrites the pod's condition, as it does again and again.
		pod.Status.Conditions[0].Message = "0/3 nodes are available: 3 Insufficient cpu."
		Expect(env.Client.Status().Update(ctx, pod)).To(Succeed())
		Consistently(batches, 200*time.Millisecond).Should(BeZero())
		clk.Step(400 * time.Millisecond)
		Eventually(batches, 5*time.Second).Should(Equal(uint64(1)), "one idle second after the only new pod, whatever was updated meanwhile")

		// A new pod does extend the window.
		pending("new-1", "1")
		Eventually(clk.Waiters).Should(BeNumerically(">=", 2))
		clk.Step(600 * time.Millisecond)
		pending("new-2", "1")
		Eventually(func() int { return int(batches()) }).Should(Equal(1))
		time.Sleep(200 * time.Millisecond) // the watch delivers new-2
		clk.Step(400 * time.Millisecond)
		Consistently(batches, 200*time.Millisecond).Should(Equal(uint64(1)), "new-2 came 600ms in and holds the window for a second")
		clk.Step(600 * time.Millisecond)
		Eventually(batches).Should(Equal(uint64(2)))
	})

	It("waits for kube-scheduler's verdict on a new pod when not planning early", func() {
		pod := created("unjudged", "1")
		Consistently(func() int {
			clk.Step(time.Second)
			return int(batches())
		}, 2*time.Second, 50*time.Millisecond).Should(BeZero(), "planned before kube-scheduler said Unschedulable")
		markUnschedulable(ctx, env.Client, pod)
		Eventually(stepped(clk, claims), 5*time.Second, 20*time.Millisecond).Should(Equal(1))
	})

	Context("planning early", func() {
		BeforeEach(func() { early = true })

		It("plans new pods before kube-scheduler has judged them", func() {
			for i := range 3 {
				created(fmt.Sprintf("new-%d", i), "5")
			}
			Eventually(stepped(clk, claims), 5*time.Second, 20*time.Millisecond).Should(Equal(1), "one large node for the three, with no pod marked Unschedulable")
			Expect(batches()).To(Equal(uint64(1)))
		})

		It("leaves a new pod that fits an existing node to kube-scheduler, and says nothing of it", func() {
			node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{GenerateName: "window-", Labels: map[string]string{"window": ns}}}
			Expect(env.Client.Create(ctx, node)).To(Succeed())
			DeferCleanup(func() { Expect(env.Client.Delete(context.Background(), node)).To(Succeed()) })
			// Ready: the not-ready taint admission put on it is gone, as
			// kube-controller-manager removes it.
			node.Spec.Taints = nil
			Expect(env.Client.Update(ctx, node)).To(Succeed())
			node.Status.Allocatable = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("16Gi"), corev1.ResourcePods: resource.MustParse("50")}
			node.Status.Capacity = node.Status.Allocatable
			Expect(env.Client.Status().Update(ctx, node)).To(Succeed())
			time.Sleep(200 * time.Millisecond) // the watch delivers the node
			created("fits", "1")
			Eventually(func() int {
				clk.Step(100 * time.Millisecond)
				return int(batches())
			}, 5*time.Second, 20*time.Millisecond).Should(Equal(1))
			Consistently(claims, 300*time.Millisecond).Should(BeZero())
			Expect(eventNotes(ctx, ns)).To(BeEmpty(), "kube-scheduler places it; a nomination from us would only be noise")

			// A new pod that does not fit gets capacity, and its nomination.
			created("too-big", "8")
			Eventually(stepped(clk, claims), 5*time.Second, 20*time.Millisecond).Should(Equal(1))
			Eventually(func() []string { return eventNotes(ctx, ns) }).Should(ConsistOf(HavePrefix("Nominated: Pod should schedule on: nodeclaim/")))
		})
	})

	It("plans a pod again when its NodeClaim's launch fails before the NodeClaim's create has returned", func() {
		failFirst.Store(true)
		pending("ice", "1")
		Eventually(stepped(clk, claims), 5*time.Second, 20*time.Millisecond).Should(Equal(2), "the pod stayed counted on the NodeClaim that failed (which is still there, being deleted)")
		Eventually(func() []string { return eventNotes(ctx, ns) }).Should(ContainElement(HavePrefix("Fallback: NodePool ")))
	})

	Context("creating NodeClaims early", func() {
		BeforeEach(func() { fill = true })

		It("creates the NodeClaims the pods seen so far fill while the window is still open, and the rest when it closes", func() {
			// Two 7-CPU pods fill a 16-CPU node: no room for a third.
			for i := range 3 {
				pending(fmt.Sprintf("seven-%d", i), "7")
			}
			// Rounds every 250ms of the clock while new pods come; the
			// window closes a second after the last.
			Eventually(func() int {
				if claims() == 0 {
					clk.Step(250 * time.Millisecond)
				}
				return claims()
			}, 5*time.Second, 400*time.Millisecond).Should(Equal(1), "the filled NodeClaim")
			Expect(batches()).To(BeZero(), "created while the window was still open")
			Consistently(claims, 300*time.Millisecond).Should(Equal(1), "the NodeClaim with room for more waits for the window")
			Eventually(stepped(clk, claims), 5*time.Second, 20*time.Millisecond).Should(Equal(2), "the third pod's, once the window closed")
			Expect(batches()).To(Equal(uint64(1)))
		})

		It("plans the batch that closes the window while an early round's NodeClaims are still being created, counting them", func() {
			gated.Store(true)
			var once sync.Once
			open := func() { once.Do(func() { close(release) }) }
			DeferCleanup(open)
			for i := range 3 {
				pending(fmt.Sprintf("seven-%d", i), "7")
			}
			// An early round creates the NodeClaim the first two fill; its
			// create does not return.
			Eventually(func() int32 {
				clk.Step(250 * time.Millisecond)
				return inFlight.Load()
			}, 5*time.Second, 100*time.Millisecond).Should(BeNumerically(">=", 1))
			// The window closes and the batch plans, the create still held.
			Eventually(stepped(clk, batches), 5*time.Second, 20*time.Millisecond).Should(Equal(uint64(1)),
				"the batch waited for the early round's create")
			Expect(claims()).To(BeZero(), "no create has returned yet")
			open()
			Eventually(claims, 5*time.Second).Should(Equal(2))
			Consistently(stepped(clk, claims), 500*time.Millisecond, 50*time.Millisecond).Should(Equal(2),
				"the batch planned the early round's pods again")
			// Events are written asynchronously.
			Eventually(func() map[string][]string { return nominations(ctx, ns) }, 5*time.Second).Should(HaveLen(3))
		})
	})

	It("plans a pod again, under a new NodeClaim, when the create of its first is refused", func() {
		refuseNext.Store(true)
		pending("refused", "7")
		// The failed batch is retried after a backoff; the pod must not stay
		// counted on the NodeClaim that was never made.
		Eventually(stepped(clk, claims), 5*time.Second, 20*time.Millisecond).Should(Equal(1))
		Consistently(stepped(clk, claims), 500*time.Millisecond, 50*time.Millisecond).Should(Equal(1))
		var list v1.NodeClaimList
		Expect(env.Client.List(ctx, &list, client.MatchingLabels{v1.NodePoolLabelKey: pool})).To(Succeed())
		Eventually(func() map[string][]string { return nominations(ctx, ns) }, 5*time.Second).Should(
			Equal(map[string][]string{"refused": {"nodeclaim/" + list.Items[0].Name}}))
	})

	It("counts the room of a NodeClaim it created that the cache does not show yet", func() {
		hideNew.Store(true)
		pending("first", "7")
		Eventually(stepped(clk, claims), 5*time.Second, 20*time.Millisecond).Should(Equal(1))
		// A second pod that fits the first one's NodeClaim.
		pending("second", "7")
		Eventually(stepped(clk, batches), 5*time.Second, 20*time.Millisecond).Should(Equal(uint64(2)))
		Consistently(claims, 300*time.Millisecond).Should(Equal(1), "planned onto the NodeClaim just created, not onto a new one")
	})

	// firstClaim is the NodeClaim made for a first pending pod of 7 CPU.
	firstClaim := func() *v1.NodeClaim {
		pending("first", "7")
		Eventually(stepped(clk, claims), 5*time.Second, 20*time.Millisecond).Should(Equal(1))
		var list v1.NodeClaimList
		Expect(env.Client.List(ctx, &list, client.MatchingLabels{v1.NodePoolLabelKey: pool})).To(Succeed())
		return &list.Items[0]
	}

	It("keeps the pods planned onto a node that registered and has not reported its room yet", func() {
		claim := firstClaim()
		// Its instance launched and its node registered; the node's status
		// is still empty, as before the kubelet first reports it.
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: claim.Name + "-node", Labels: map[string]string{"window": ns, v1.NodePoolLabelKey: pool}}}
		Expect(env.Client.Create(ctx, node)).To(Succeed())
		DeferCleanup(func() { Expect(env.Client.Delete(context.Background(), node)).To(Succeed()) })
		claim.Status.NodeName = node.Name
		claim.Status.Allocatable = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("16"), corev1.ResourceMemory: resource.MustParse("64Gi"), corev1.ResourcePods: resource.MustParse("50")}
		Expect(env.Client.Status().Update(ctx, claim)).To(Succeed())
		Eventually(func() string {
			c := &v1.NodeClaim{}
			if reader.Get(ctx, client.ObjectKeyFromObject(claim), c) != nil || reader.Get(ctx, client.ObjectKeyFromObject(node), &corev1.Node{}) != nil {
				return ""
			}
			return c.Status.NodeName
		}).Should(Equal(node.Name))

		pending("second", "7")
		Eventually(stepped(clk, batches), 5*time.Second, 20*time.Millisecond).Should(Equal(uint64(2)))
		Consistently(claims, 300*time.Millisecond).Should(Equal(1), "both fit the instance launched for the first")
	})

	It("does not count a NodeClaim it created that is deleted before any plan saw it", func() {
		gone := firstClaim()
		gone.Finalizers = nil
		Expect(env.Client.Update(ctx, gone)).To(Succeed())
		Expect(env.Client.Delete(ctx, gone)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(reader.Get(ctx, client.ObjectKeyFromObject(gone), &v1.NodeClaim{}))
		}).Should(BeTrue())

		pending("second", "7")
		Eventually(stepped(clk, claims), 5*time.Second, 20*time.Millisecond).Should(Equal(1), "the second pod was planned onto the deleted NodeClaim")
	})

	It("plans again the pods whose node kube-scheduler filled with pods planned elsewhere, so their room is not given away twice", func() {
		for i := range 4 {
			pending(fmt.Sprintf("seven-%d", i), "7")
		}
		Eventually(stepped(clk, claims), 5*time.Second, 20*time.Millisecond).Should(Equal(2), "two pods a node")
		// Which pods the batch planned onto which NodeClaim.
		planned := map[string][]string{}
		Eventually(func() int {
			planned = nominations(ctx, ns)
			return len(planned["seven-0"]) + len(planned["seven-1"]) + len(planned["seven-2"]) + len(planned["seven-3"])
		}).Should(Equal(4))
		byClaim := map[string][]string{}
		for pod, to := range planned {
			byClaim[strings.TrimPrefix(to[0], "nodeclaim/")] = append(byClaim[strings.TrimPrefix(to[0], "nodeclaim/")], pod)
		}
		Expect(byClaim).To(HaveLen(2))
		var names []string
		for name := range byClaim {
			names = append(names, name)
		}
		// Both NodeClaims' nodes register.
		for _, name := range names {
			node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name + "-node", Labels: map[string]string{"window": ns, v1.NodePoolLabelKey: pool}}}
			Expect(env.Client.Create(ctx, node)).To(Succeed())
			DeferCleanup(func() { Expect(env.Client.Delete(context.Background(), node)).To(Succeed()) })
			node.Status.Allocatable = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("16"), corev1.ResourceMemory: resource.MustParse("64Gi"), corev1.ResourcePods: resource.MustParse("50")}
			node.Status.Capacity = node.Status.Allocatable
			Expect(env.Client.Status().Update(ctx, node)).To(Succeed())
			claim := &v1.NodeClaim{}
			Expect(env.Client.Get(ctx, client.ObjectKey{Name: name}, claim)).To(Succeed())
			claim.Status.NodeName = node.Name
			Expect(env.Client.Status().Update(ctx, claim)).To(Succeed())
		}
		// kube-scheduler binds the pods planned for the first NodeClaim onto
		// the second's node: the second's own pods no longer fit there, and
		// the first's node looks empty.
		for _, name := range byClaim[names[0]] {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
			Expect(env.Client.SubResource("binding").Create(ctx, pod, &corev1.Binding{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Target: corev1.ObjectReference{Kind: "Node", Name: names[1] + "-node"}})).To(Succeed())
		}
		Eventually(func() int {
			n := 0
			for _, name := range names {
				c := &v1.NodeClaim{}
				if reader.Get(ctx, client.ObjectKey{Name: name}, c) == nil && c.Status.NodeName != "" {
					n++
				}
			}
			var pods corev1.PodList
			Expect(reader.List(ctx, &pods, client.InNamespace(ns))).To(Succeed())
			for _, pod := range pods.Items {
				if pod.Spec.NodeName != "" {
					n++
				}
			}
			return n
		}).Should(Equal(4), "the provisioner's cache has the registrations and the bindings")

		// All the room there is goes to the four pods: a fifth needs a node.
		pending("fifth", "7")
		Eventually(stepped(clk, claims), 5*time.Second, 20*time.Millisecond).Should(Equal(3), "the fifth pod was planned onto room kube-scheduler gave away")
		Eventually(func() map[string][]string { return nominations(ctx, ns) }).Should(And(
			HaveKeyWithValue(byClaim[names[1]][0], HaveLen(2)), HaveKeyWithValue(byClaim[names[1]][1], HaveLen(2))),
			"the second NodeClaim's pods were planned again, with the fifth")
	})

	It("creates its NodeClaims concurrently", func() {
		for i := range 6 {
			pending(fmt.Sprintf("big-%d", i), "15") // one large node each
		}
		Eventually(clk.Waiters).Should(BeNumerically(">=", 2))
		Eventually(func() int {
			clk.Step(time.Second)
			return claims()
		}).Should(Equal(6))
		Expect(most.Load()).To(BeNumerically(">=", 2), "NodeClaims were created one at a time")
	})
})

// countingClient makes NodeClaim creates take a while and counts how many run
// at once; created, when set, sees each NodeClaim before its create returns.
// Its lists leave out the NodeClaims named in hidden.
type countingClient struct {
	client.Client
	inFlight, most *atomic.Int32
	created        func(*v1.NodeClaim)
	hidden         *sync.Map
	gated          *atomic.Bool
	release        chan struct{}
	refuseNext     *atomic.Bool
}

func (c *countingClient) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if err := c.Client.List(ctx, list, opts...); err != nil {
		return err
	}
	if claims, ok := list.(*v1.NodeClaimList); ok && c.hidden != nil {
		shown := claims.Items[:0:0]
		for _, claim := range claims.Items {
			if _, hide := c.hidden.Load(claim.Name); !hide {
				shown = append(shown, claim)
			}
		}
		claims.Items = shown
	}
	return nil
}

func (c *countingClient) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	if _, ok := obj.(*v1.NodeClaim); ok {
		n := c.inFlight.Add(1)
		defer c.inFlight.Add(-1)
		for m := c.most.Load(); n > m && !c.most.CompareAndSwap(m, n); m = c.most.Load() {
		}
		time.Sleep(100 * time.Millisecond)
		if c.gated != nil && c.gated.Load() {
			<-c.release
		}
		if c.refuseNext != nil && c.refuseNext.CompareAndSwap(true, false) {
			return apierrors.NewAlreadyExists(schema.GroupResource{Group: v1.Group, Resource: "nodeclaims"}, obj.GetName())
		}
	}
	if err := c.Client.Create(ctx, obj, opts...); err != nil {
		return err
	}
	if claim, ok := obj.(*v1.NodeClaim); ok && c.created != nil {
		c.created(claim)
	}
	return nil
}

// stepped reads f after moving the clock on by 100ms, for Eventually to poll
// while batch windows and rounds come due.
func stepped[T any](clk *clocktesting.FakeClock, f func() T) func() T {
	return func() T {
		clk.Step(100 * time.Millisecond)
		return f()
	}
}

// nominations are where each pod of the namespace was nominated, in order.
func nominations(ctx context.Context, ns string) map[string][]string {
	var evs eventsv1.EventList
	Expect(env.Client.List(ctx, &evs, client.InNamespace(ns))).To(Succeed())
	out := map[string][]string{}
	for _, e := range evs.Items {
		if e.Reason == "Nominated" {
			out[e.Regarding.Name] = append(out[e.Regarding.Name], strings.TrimPrefix(e.Note, "Pod should schedule on: "))
		}
	}
	return out
}

func eventNotes(ctx context.Context, ns string) []string {
	var evs eventsv1.EventList
	Expect(env.Client.List(ctx, &evs, client.InNamespace(ns))).To(Succeed())
	var out []string
	for _, e := range evs.Items {
		out = append(out, e.Reason+": "+e.Note)
	}
	return out
}
