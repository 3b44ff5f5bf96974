// Package returning_test runs the local cluster (real kube-scheduler,
// kube-controller-manager, KWOK and node agent) with Backstop and the EC2
// simulator on a fake clock that runs 25 times faster than real time,
// and checks the way back to Spot after an On-Demand fallback: minutes of
// simulated outage, cool-downs and rate limits in seconds of test.
package returning_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/controllers/disruption"
	"github.com/backstop-sh/backstop/test"
	"github.com/backstop-sh/backstop/test/ec2sim"
	"github.com/backstop-sh/backstop/test/local"
)

func TestReturning(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Return to Spot")
}

const (
	// speed is how much faster than real time the fake clock runs.
	speed = 25
	// maxPerInterval and interval are the rate limit the controller runs
	// with: fewer than the three fallback nodes of the flapping spec, so the
	// limit, not the cool-down, decides there.
	maxPerInterval = 2
	interval       = 5 * time.Minute
	cooldown       = 5 * time.Minute
)

var (
	ctx     = context.Background()
	spotOut = ec2sim.Faults{Unfulfillable: []ec2sim.CapacityRule{{CapacityType: "spot"}}}
)

// pools are a Spot pool of weight 100 and its On-Demand fallback of weight
// 10, alike but for capacity type, as the field report runs them.
func pools() []client.Object {
	pool := func(name string, weight int32, capacityType string) *v1.NodePool {
		return &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.NodePoolSpec{
			Weight: ptr.To(weight),
			Template: v1.NodeClaimTemplate{Spec: v1.NodeClaimTemplateSpec{
				NodeClassRef: &v1.NodeClassReference{Group: awsv1.Group, Kind: "EC2NodeClass", Name: "default"},
				Requirements: []v1.NodeSelectorRequirementWithMinValues{
					{Key: v1.CapacityTypeLabelKey, Operator: v1.OpIn, Values: []string{capacityType}},
					{Key: corev1.LabelInstanceTypeStable, Operator: v1.OpIn, Values: []string{"m5.large", "c5.large"}},
				},
			}},
			Disruption: v1.Disruption{ConsolidateAfter: v1.MustParseNillableDuration("Never"), Budgets: []v1.Budget{{Nodes: "100%"}}},
		}}
	}
	class := &awsv1.EC2NodeClass{ObjectMeta: metav1.ObjectMeta{Name: "default"}, Spec: awsv1.EC2NodeClassSpec{
		Role:                       "KarpenterNodeRole-my-cluster",
		AMISelectorTerms:           []awsv1.AMISelectorTerm{{Alias: "al2023@latest"}},
		SubnetSelectorTerms:        []awsv1.SubnetSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": "my-cluster"}}},
		SecurityGroupSelectorTerms: []awsv1.SecurityGroupSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": "my-cluster"}}},
	}}
	return []client.Object{pool("spot", 100, v1.CapacityTypeSpot), pool("on-demand", 10, v1.CapacityTypeOnDemand), class}
}

// watcher samples the cluster every 50 ms of real time: the fewest pods
// of the Deployment seen with a Ready place (bound to a Ready node) since it
// was armed, and every return started (NodeClaim, start on the fake clock).
type watcher struct {
	mu       sync.Mutex
	armed    bool
	minReady int
	// atFewest says, for the sample that set minReady, where each pod
	// without a Ready place was: the evidence when the PDB check fails.
	atFewest []string
	starts   map[string]time.Time
}

func (w *watcher) run(ctx context.Context, c client.Client) {
	for ctx.Err() == nil {
		var pods corev1.PodList
		var claims v1.NodeClaimList
		// Nodes are listed before and after the pods: a node Ready in
		// either list was Ready when the pods were listed, whether it
		// joined or left in between (lists are no snapshot).
		var nodesBefore, nodesAfter corev1.NodeList
		if c.List(ctx, &nodesBefore) == nil && c.List(ctx, &pods, client.InNamespace("default"), client.MatchingLabels{"app": "inflate"}) == nil &&
			c.List(ctx, &nodesAfter) == nil && c.List(ctx, &claims) == nil {
			readyNodes := map[string]bool{}
			for _, nodes := range []corev1.NodeList{nodesBefore, nodesAfter} {
				for i := range nodes.Items {
					for _, cond := range nodes.Items[i].Status.Conditions {
						if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
							readyNodes[nodes.Items[i].Name] = true
						}
					}
				}
			}
			placed := 0
			var unplaced []string
			for _, p := range pods.Items {
				switch {
				case p.DeletionTimestamp == nil && readyNodes[p.Spec.NodeName]:
					placed++
				case p.DeletionTimestamp != nil:
					unplaced = append(unplaced, fmt.Sprintf("%s deleting on %q", p.Name, p.Spec.NodeName))
				default:
					unplaced = append(unplaced, fmt.Sprintf("%s on %q, not a Ready node (ready: %v), phase %s", p.Name, p.Spec.NodeName, readyNodes, p.Status.Phase))
				}
			}
			w.mu.Lock()
			if w.armed && placed < w.minReady {
				w.minReady, w.atFewest = placed, unplaced
				GinkgoWriter.Printf("%s fewest pods with a Ready place: %d; %v\n", time.Now().Format(time.StampMilli), placed, unplaced)
			}
			for _, cl := range claims.Items {
				if at, err := time.Parse(time.RFC3339, cl.Annotations[disruption.StartedAnnotation]); err == nil {
					// A replacement carries the start of the node it replaces.
					node := cl.Name
					if of := cl.Annotations[disruption.ReplacementForAnnotation]; of != "" {
						node = of
					}
					w.starts[node+"@"+at.Format(time.RFC3339)] = at
				}
			}
			w.mu.Unlock()
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// arm starts tracking the fewest Ready pods from n.
func (w *watcher) arm(n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.armed, w.minReady = true, n
}

func (w *watcher) fewestPlaced() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.minReady
}

// unplacedAtFewest are the pods without a Ready place when there were
// fewest with one.
func (w *watcher) unplacedAtFewest() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.atFewest
}

// startsSince are the return start times at or after t, sorted.
func (w *watcher) startsSince(t time.Time) []time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []time.Time
	for _, at := range w.starts {
		if !at.Before(t.Truncate(time.Second)) {
			out = append(out, at)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}

func isReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

var _ = Describe("back to Spot after an On-Demand fallback", Ordered, func() {
	var (
		cluster *local.Cluster
		c       client.Client
		clk     *clocktesting.FakeClock
		w       = &watcher{starts: map[string]time.Time{}}
	)

	// nodesBy counts the live NodeClaims with nodes by capacity type.
	nodesBy := func() map[string]int {
		var claims v1.NodeClaimList
		Expect(c.List(ctx, &claims)).To(Succeed())
		out := map[string]int{}
		for _, cl := range claims.Items {
			if cl.DeletionTimestamp == nil && cl.Status.NodeName != "" {
				out[cl.Labels[v1.CapacityTypeLabelKey]]++
			}
		}
		return out
	}
	// allRunningOn waits until every replica is Ready on nodes of the
	// capacity type and no NodeClaim of the other type is left.
	allRunningOn := func(capacityType string, replicas int, within time.Duration) {
		Eventually(func(g Gomega) {
			var pods corev1.PodList
			g.Expect(c.List(ctx, &pods, client.InNamespace("default"), client.MatchingLabels{"app": "inflate"})).To(Succeed())
			ready := 0
			for _, p := range pods.Items {
				if p.DeletionTimestamp != nil || !isReady(&p) {
					continue
				}
				node := &corev1.Node{}
				g.Expect(c.Get(ctx, client.ObjectKey{Name: p.Spec.NodeName}, node)).To(Succeed())
				g.Expect(node.Labels).To(HaveKeyWithValue(v1.CapacityTypeLabelKey, capacityType), "pod %s", p.Name)
				ready++
			}
			g.Expect(ready).To(Equal(replicas))
			var claims v1.NodeClaimList
			g.Expect(c.List(ctx, &claims)).To(Succeed())
			for _, cl := range claims.Items {
				g.Expect(cl.Labels[v1.CapacityTypeLabelKey]).To(Or(Equal(capacityType), BeEmpty()), "nodeclaim %s is left", cl.Name)
			}
		}, within).Should(Succeed())
	}
	// steady waits until the Deployment has n Ready pods and no other, for
	// two seconds on end, before a spec arms its watcher:
	// kube-controller-manager's taint eviction, its cache still showing a
	// joined node's unregistered taint, can delete Ready pods just after
	// they ran; armed then, the watcher counted their Pending replacements
	// against the returns (seen once, 20:14 on 2026-11-22: two pods Pending
	// a second after arming, before any return began).
	steady := func(n int) {
		count := func() int {
			var pods corev1.PodList
			Expect(c.List(ctx, &pods, client.InNamespace("default"), client.MatchingLabels{"app": "inflate"})).To(Succeed())
			for _, p := range pods.Items {
				if !isReady(&p) || p.DeletionTimestamp != nil {
					return -1
				}
			}
			return len(pods.Items)
		}
		Eventually(func(g Gomega) {
			g.Expect(count()).To(Equal(n))
			g.Consistently(count, 2*time.Second, 100*time.Millisecond).Should(Equal(n))
		}, time.Minute).Should(Succeed())
	}
	scale := func(n int32) {
		d := &appsv1.Deployment{}
		Expect(c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "inflate"}, d)).To(Succeed())
		d.Spec.Replicas = ptr.To(n)
		Expect(c.Update(ctx, d)).To(Succeed())
	}
	// realFor is how long the test waits, in real time, for simulated d.
	realFor := func(d time.Duration) time.Duration { return d/speed + 30*time.Second }

	BeforeAll(func() {
		clk = clocktesting.NewFakeClock(time.Now())
		var err error
		cluster, err = local.Start(ctx, local.Options{
			Bin: filepath.Join(test.Root, "bin"), Dir: GinkgoT().TempDir(), Clock: clk,
			Simulator: ec2sim.Config{Region: "ap-northeast-2", ClusterTag: "my-cluster", InstanceTypes: []string{"m5.large", "c5.large"}, Faults: spotOut},
			ControllerFlags: []string{fmt.Sprintf("--return-max-per-interval=%d", maxPerInterval), "--return-interval=" + interval.String(),
				"--return-cooldown=" + cooldown.String()},
			Log: zap.New(zap.WriteTo(GinkgoWriter)),
		})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(cluster.Stop)
		c = cluster.Client
		runCtx, cancel := context.WithCancel(ctx)
		DeferCleanup(cancel)
		go func() {
			defer GinkgoRecover()
			for runCtx.Err() == nil {
				time.Sleep(20 * time.Millisecond)
				clk.Step(time.Second * 20 * speed / 1000)
			}
		}()
		go w.run(runCtx, c)
		for _, o := range pools() {
			Expect(c.Create(ctx, o)).To(Succeed())
		}
		Expect(c.Create(ctx, local.Inflate(2))).To(Succeed())
		Expect(c.Create(ctx, &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "inflate"},
			Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ptr.To(intstr.FromInt32(1)), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "inflate"}}}})).To(Succeed())
	})

	It("falls back to On-Demand while Spot is out, and is back on Spot within 10 minutes of Spot's return, replacement first", func() {
		allRunningOn(v1.CapacityTypeOnDemand, 2, time.Minute)
		steady(2)
		w.arm(2)
		outFor := 8 * time.Minute
		returnsAt := clk.Now().Add(outFor)
		Eventually(func() time.Time { return clk.Now() }, realFor(outFor)).Should(BeTemporally(">=", returnsAt))
		cluster.Sim.SetFaults(ec2sim.Faults{})
		back := clk.Now()
		GinkgoWriter.Printf("Spot capacity returned at %s\n", back.Format(time.TimeOnly))

		allRunningOn(v1.CapacityTypeSpot, 2, realFor(10*time.Minute))
		took := clk.Since(back)
		GinkgoWriter.Printf("both pods back on Spot %s (simulated) after Spot returned\n", took)
		Expect(took).To(BeNumerically("<=", 10*time.Minute), "back on Spot within 10 minutes of simulated time")
		Expect(w.fewestPlaced()).To(BeNumerically(">=", 1), "the PDB allows one pod without a Ready place (a Ready node), no more; at the fewest: %v", w.unplacedAtFewest())

		var evs eventsv1.EventList
		Expect(c.List(ctx, &evs)).To(Succeed())
		returned := 0
		for _, e := range evs.Items {
			if e.Reason == "ReturnedToPreferredPool" && e.Regarding.Kind == "NodeClaim" {
				returned++
			}
		}
		Expect(returned).To(Equal(2), "each On-Demand node was returned, none merely deleted")
	})

	It("does not churn while Spot capacity flaps every three minutes", func() {
		cluster.Sim.SetFaults(spotOut)
		scale(5)
		Eventually(nodesBy, time.Minute).Should(Equal(map[string]int{v1.CapacityTypeSpot: 2, v1.CapacityTypeOnDemand: 3}))
		steady(5)
		w.arm(5)
		from := clk.Now()
		onDemandBefore := createdOnDemand(cluster.Sim)
		for phase := 0; phase < 10; phase++ {
			if phase%2 == 0 {
				cluster.Sim.SetFaults(ec2sim.Faults{})
			} else {
				cluster.Sim.SetFaults(spotOut)
			}
			until := clk.Now().Add(3 * time.Minute)
			Eventually(func() time.Time { return clk.Now() }, realFor(3*time.Minute)).Should(BeTemporally(">=", until))
		}
		cluster.Sim.SetFaults(ec2sim.Faults{})
		allRunningOn(v1.CapacityTypeSpot, 5, realFor(10*time.Minute))

		starts := w.startsSince(from)
		GinkgoWriter.Printf("returns started while Spot flapped: %v\n", starts)
		Expect(starts).NotTo(BeEmpty())
		for i := range starts {
			inWindow := 0
			for _, s := range starts[i:] {
				if s.Sub(starts[i]) < interval {
					inWindow++
				}
			}
			Expect(inWindow).To(BeNumerically("<=", maxPerInterval), "returns starting within %s of %s", interval, starts[i])
		}
		Expect(createdOnDemand(cluster.Sim)).To(Equal(onDemandBefore), "a return never falls back to On-Demand: no On-Demand node was created while Spot flapped")
		Expect(w.fewestPlaced()).To(BeNumerically(">=", 4), "the PDB allows one pod without a Ready place (a Ready node), no more; at the fewest: %v", w.unplacedAtFewest())
	})
})

// createdOnDemand counts On-Demand instances the simulator ever launched.
func createdOnDemand(sim *ec2sim.Server) int {
	n := 0
	for _, r := range sim.Requests() {
		if r.Action == "CreateFleet" && r.Error == "" && r.Params["TargetCapacitySpecification.DefaultTargetCapacityType"] == "on-demand" {
			n++
		}
	}
	return n
}
