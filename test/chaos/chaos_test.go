// Package chaos_test runs Backstop as users run it — its own process, talking
// to a real API server through a kubeconfig and to the EC2 simulator over
// HTTP — on the local cluster (kube-scheduler, kube-controller-manager, KWOK),
// and hurts it: EC2 throttling every second request, and the process killed
// ten times the moment EC2 has acted on a CreateFleet, before the answer gets
// back. Every pod must still run, nothing may leak or be launched twice, and
// the EC2 calls stay within six times those of an undisturbed run; a static
// NodePool killed alike ends with exactly its replicas.
package chaos_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/test"
	"github.com/backstop-sh/backstop/test/ec2sim"
	"github.com/backstop-sh/backstop/test/local"
)

func TestChaos(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Chaos")
}

const pods = 100

var controllerBinary string

var _ = BeforeSuite(func() {
	var err error
	controllerBinary, err = test.BuildController(GinkgoT().TempDir())
	Expect(err).NotTo(HaveOccurred())
})

// run is one scale-up of 100 pods on a fresh local cluster.
type run struct {
	cluster *local.Cluster
	took    time.Duration
}

func start(ctx context.Context, faults ec2sim.Faults) *run {
	cluster, err := local.Start(ctx, local.Options{
		Bin: filepath.Join(test.Root, "bin"), Dir: GinkgoT().TempDir(),
		Simulator:        ec2sim.Config{ClusterTag: "chaos", Faults: faults},
		ControllerBinary: controllerBinary,
		// Killed ten times: a replacement takes over within seconds.
		LeaderElectionFlags: local.FastFailover,
		ControllerFlags:     []string{"--batch-idle-duration=1s", "--gc-interval=10s", "--log-format=console"},
		Log:                 zap.New(zap.WriteTo(GinkgoWriter)),
		// As installed: the chart's service account and RBAC, its own Lease only.
		Charts: true,
	})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(cluster.Stop)
	objs, err := test.ReadManifests("chaos.yaml")
	Expect(err).NotTo(HaveOccurred())
	for _, o := range objs {
		Expect(cluster.Client.Create(ctx, o)).To(Succeed())
	}
	return &run{cluster: cluster}
}

// scaleUp creates the 100-pod Deployment and waits until every pod runs.
func (r *run) scaleUp(ctx context.Context) {
	begin := time.Now()
	Expect(r.cluster.Client.Create(ctx, local.Inflate(pods))).To(Succeed())
	Eventually(func() int {
		var list corev1.PodList
		Expect(r.cluster.Client.List(ctx, &list, client.InNamespace("default"), client.MatchingLabels{"app": "inflate"})).To(Succeed())
		n := 0
		for _, p := range list.Items {
			if p.Status.Phase == corev1.PodRunning {
				n++
			}
		}
		return n
	}, 8*time.Minute, time.Second).Should(Equal(pods), func() string { return "every pod runs\n" + r.diagnosis(ctx) })
	r.took = time.Since(begin)
}

// diagnosis tells what a stalled run was doing: the NodePool's and the
// NodeClaims' conditions, the EC2 calls, and the controller's last errors.
func (r *run) diagnosis(ctx context.Context) string {
	var b strings.Builder
	var pools v1.NodePoolList
	if err := r.cluster.Client.List(ctx, &pools); err == nil {
		for _, p := range pools.Items {
			fmt.Fprintf(&b, "NodePool %s: %v\n", p.Name, p.Status.Conditions)
		}
	}
	var claims v1.NodeClaimList
	if err := r.cluster.Client.List(ctx, &claims); err == nil {
		fmt.Fprintf(&b, "%d NodeClaims\n", len(claims.Items))
		for i, c := range claims.Items {
			if i == 5 {
				break
			}
			fmt.Fprintf(&b, "  %s: %v\n", c.Name, c.Status.Conditions)
		}
	}
	total, by := r.calls()
	fmt.Fprintf(&b, "%d EC2 calls %v\n", total, by)
	logs, _ := filepath.Glob(filepath.Join(r.cluster.Dir, "controller-*.log"))
	for _, name := range logs {
		data, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		var errs []string
		for _, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, "ERROR") || strings.Contains(line, "panic") {
				errs = append(errs, line)
			}
		}
		fmt.Fprintf(&b, "%s: %d error lines; the last:\n", filepath.Base(name), len(errs))
		for _, line := range errs[max(0, len(errs)-15):] {
			fmt.Fprintf(&b, "  %.400s\n", line)
		}
	}
	return b.String()
}

// calls counts the EC2 requests by action.
func (r *run) calls() (int, map[string]int) {
	by := map[string]int{}
	reqs := r.cluster.Sim.Requests()
	for _, q := range reqs {
		by[q.Action]++
	}
	return len(reqs), by
}

// expectNothingLeakedOrDoubled checks that every instance ever launched
// belongs to a NodeClaim that exists, one instance per NodeClaim.
func (r *run) expectNothingLeakedOrDoubled(ctx context.Context) {
	var claims v1.NodeClaimList
	Expect(r.cluster.Client.List(ctx, &claims)).To(Succeed())
	byName := map[string]v1.NodeClaim{}
	for _, c := range claims.Items {
		byName[c.Name] = c
	}
	instances := r.cluster.Sim.Instances()
	perClaim := map[string][]string{}
	for _, inst := range instances {
		owner := inst.Tags[v1.NodeClaimLabelKey]
		perClaim[owner] = append(perClaim[owner], inst.ID+"("+inst.State+")")
		c, ok := byName[owner]
		Expect(ok).To(BeTrue(), "instance %s (%s) was launched for NodeClaim %q, which does not exist", inst.ID, inst.State, owner)
		Expect(c.Status.ProviderID).To(HaveSuffix("/"+inst.ID), "NodeClaim %s knows another instance than %s", owner, inst.ID)
	}
	for owner, ids := range perClaim {
		Expect(ids).To(HaveLen(1), "NodeClaim %s got more than one instance", owner)
	}
	Expect(instances).To(HaveLen(len(claims.Items)), "one instance per NodeClaim, and no NodeClaim without one")
}

func (r *run) report(name string) {
	total, by := r.calls()
	actions := make([]string, 0, len(by))
	for a := range by {
		actions = append(actions, a)
	}
	sort.Strings(actions)
	detail := ""
	for _, a := range actions {
		detail += fmt.Sprintf(" %s=%d", a, by[a])
	}
	line := fmt.Sprintf("%s: %d pods Running in %s, %d instances, %d EC2 calls (%s)", name, pods, r.took.Round(100*time.Millisecond),
		len(r.cluster.Sim.Instances()), total, detail[1:])
	AddReportEntry(name, line)
	GinkgoWriter.Println(line)
	fmt.Fprintln(os.Stderr, "chaos: "+line)
}

// killAfterCreateFleet kills the controller the moment EC2 has acted on a
// CreateFleet, before the answer gets back, up to n times, starting another
// 0.2 s later; it returns how many kills there were, and a channel that
// receives once per restart.
func (r *run) killAfterCreateFleet(n int) (kills func() int, restarted chan struct{}) {
	var mu sync.Mutex
	killed := 0
	restarting := false
	restarted = make(chan struct{}, n)
	r.cluster.Sim.BeforeAnswer(func(action string) {
		mu.Lock()
		defer mu.Unlock()
		// Launches of the process just killed may still be answered: one
		// kill per process.
		if action != "CreateFleet" || killed >= n || restarting {
			return
		}
		killed++
		restarting = true
		// EC2 has launched; the controller dies before it hears so.
		r.cluster.KillController()
		go func() {
			defer GinkgoRecover()
			time.Sleep(200 * time.Millisecond)
			Expect(r.cluster.StartController()).To(Succeed())
			mu.Lock()
			restarting = false
			mu.Unlock()
			restarted <- struct{}{}
		}()
	})
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return killed
	}, restarted
}

var _ = Describe("Backstop as a separate process", Ordered, func() {
	ctx := context.Background()
	var undisturbed int

	It("scales 100 pods up undisturbed, as the baseline", func() {
		r := start(ctx, ec2sim.Faults{})
		r.scaleUp(ctx)
		r.expectNothingLeakedOrDoubled(ctx)
		r.report("undisturbed")
		undisturbed, _ = r.calls()
	})

	It("runs every pod while EC2 throttles every second request", func() {
		r := start(ctx, ec2sim.Faults{ThrottleEvery: 2})
		r.scaleUp(ctx)
		r.expectNothingLeakedOrDoubled(ctx)
		r.report("throttled")
		_, by := r.calls()
		Expect(by["CreateFleet"]).To(BeNumerically(">", 0))
	})

	It("launches nothing twice and leaks nothing when killed ten times the moment EC2 has acted on a CreateFleet", func() {
		r := start(ctx, ec2sim.Faults{})
		kills, restarted := r.killAfterCreateFleet(10)
		r.scaleUp(ctx)
		Expect(kills()).To(Equal(10), "ten kills, each right after a CreateFleet")
		Eventually(restarted).Should(HaveLen(10))
		// Let garbage collection run once more: it must find nothing to do.
		time.Sleep(12 * time.Second)
		r.expectNothingLeakedOrDoubled(ctx)
		r.report("killed 10 times")
		total, _ := r.calls()
		// Each of the eleven processes discovers instance types, zones and Spot
		// prices once at start (about 23 calls); nothing else may multiply.
		Expect(total).To(BeNumerically("<=", 6*undisturbed), "EC2 calls stay within a few times an undisturbed run's %d", undisturbed)
	})

	It("keeps a static NodePool at its replicas, none launched twice or leaked, when killed five times the moment EC2 has acted on a CreateFleet", func() {
		const replicas = 12
		r := start(ctx, ec2sim.Faults{})
		kills, restarted := r.killAfterCreateFleet(5)
		pool := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "fixed"}, Spec: v1.NodePoolSpec{Replicas: ptr.To[int64](replicas),
			Template: v1.NodeClaimTemplate{Spec: v1.NodeClaimTemplateSpec{
				NodeClassRef: &v1.NodeClassReference{Group: "karpenter.k8s.aws", Kind: "EC2NodeClass", Name: "default"},
				Requirements: []v1.NodeSelectorRequirementWithMinValues{{Key: corev1.LabelInstanceTypeStable, Operator: v1.OpIn, Values: []string{"c5.xlarge", "m5.xlarge"}}}}}}}
		Expect(r.cluster.Client.Create(ctx, pool)).To(Succeed())
		registered := func() int {
			var claims v1.NodeClaimList
			Expect(r.cluster.Client.List(ctx, &claims, client.MatchingLabels{v1.NodePoolLabelKey: "fixed"})).To(Succeed())
			n := 0
			for _, c := range claims.Items {
				if c.DeletionTimestamp == nil && meta.IsStatusConditionTrue(c.Status.Conditions, v1.ConditionRegistered) {
					n++
				}
			}
			return n
		}
		Eventually(registered, 4*time.Minute, time.Second).Should(Equal(replicas), func() string { return r.diagnosis(ctx) })
		Expect(kills()).To(Equal(5), "five kills, each right after a CreateFleet")
		Eventually(restarted).Should(HaveLen(5))
		Consistently(registered, 12*time.Second, time.Second).Should(Equal(replicas), "no more, and garbage collection finds nothing")
		var claims v1.NodeClaimList
		Expect(r.cluster.Client.List(ctx, &claims)).To(Succeed())
		Expect(claims.Items).To(HaveLen(replicas), "no NodeClaim besides the replicas, none being deleted")
		r.expectNothingLeakedOrDoubled(ctx)
	})
})
