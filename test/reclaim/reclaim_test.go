// Package reclaim_test measures what a Spot reclaim costs a Deployment behind
// a PodDisruptionBudget, with Backstop reading the interruption queue and
// without it: Backstop runs as its own process on the local cluster (real
// kube-scheduler and kube-controller-manager, KWOK), the simulator warns of
// the reclaim through its SQS queue and takes the instance back when the
// notice is up, and the pods still on it stop then.
package reclaim_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
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

func TestReclaim(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Spot reclaim")
}

const (
	replicas = 6
	queue    = "backstop-interruptions"
	notice   = 30 * time.Second
	// bootTime is how long a new instance takes to register its node: less
	// than on AWS (a minute or so), enough to show what waiting for one costs.
	bootTime = 15 * time.Second
)

var controllerBinary string

var _ = BeforeSuite(func() {
	var err error
	controllerBinary, err = test.BuildController(GinkgoT().TempDir())
	Expect(err).NotTo(HaveOccurred())
})

// outcome is what one reclaim cost.
type outcome struct {
	// unavailable is the pod-seconds the Deployment ran below its replicas.
	unavailable time.Duration
	// longestWait is the longest a pod made after the warning took to be Ready.
	longestWait time.Duration
	// replacementBeforeReclaim is how long before the reclaim the first new
	// node initialized (negative: after).
	replacementBeforeReclaim time.Duration
}

// web is the demo Deployment, its pods given two seconds to stop.
func web() *appsv1.Deployment {
	d := local.Inflate(replicas)
	d.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](2)
	return d
}

func ready(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// reclaim runs the scenario on a fresh cluster; flags are Backstop's extras.
func reclaim(ctx context.Context, flags ...string) outcome {
	cluster, err := local.Start(ctx, local.Options{
		Bin: filepath.Join(test.Root, "bin"), Dir: GinkgoT().TempDir(),
		Simulator:        ec2sim.Config{ClusterTag: "reclaim", InterruptionQueue: queue, SpotNotice: ec2sim.Duration{Duration: notice}},
		ControllerBinary: controllerBinary,
		BootTime:         bootTime,
		ControllerFlags:  append([]string{"--batch-idle-duration=1s", "--gc-interval=5s", "--log-format=console"}, flags...),
		Log:              zap.New(zap.WriteTo(GinkgoWriter)),
	})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(cluster.Stop)
	c := cluster.Client
	test.ApplyManifests(ctx, c, "reclaim.yaml")
	Expect(c.Create(ctx, web())).To(Succeed())
	pods := func() []corev1.Pod {
		var list corev1.PodList
		Expect(c.List(ctx, &list, client.InNamespace("default"), client.MatchingLabels{"app": "inflate"})).To(Succeed())
		return list.Items
	}
	readyCount := func() int {
		n := 0
		list := pods()
		for i := range list {
			if ready(&list[i]) {
				n++
			}
		}
		return n
	}
	Eventually(readyCount, 3*time.Minute, time.Second).Should(Equal(replicas), "every pod Ready before the reclaim")

	// The node with the most pods is reclaimed.
	perNode := map[string]int{}
	for _, p := range pods() {
		perNode[p.Spec.NodeName]++
	}
	victim, most := "", 0
	for n, k := range perNode {
		if k > most {
			victim, most = n, k
		}
	}
	var claims v1.NodeClaimList
	Expect(c.List(ctx, &claims)).To(Succeed())
	before := map[string]bool{}
	for _, nc := range claims.Items {
		before[nc.Name] = true
	}
	// The local node agent names a node after its instance.
	Expect(cluster.Sim.Interrupt(victim)).To(BeTrue(), "instance %s", victim)
	warned := time.Now()
	reclaimAt := warned.Add(notice)
	GinkgoWriter.Printf("warned of the reclaim of %s (%d pods)\n", victim, most)

	var out outcome
	out.replacementBeforeReclaim = -time.Hour
	seen := map[string]time.Time{}
	waits := map[string]time.Duration{}
	last := time.Now()
	steady := time.Time{}
	lastReady := replicas
	for time.Since(warned) < notice+2*time.Minute {
		time.Sleep(100 * time.Millisecond)
		now := time.Now()
		list := pods()
		n := 0
		for i := range list {
			p := &list[i]
			if ready(p) {
				n++
			}
			if p.CreationTimestamp.After(warned) || p.CreationTimestamp.Time.Equal(warned) {
				if _, ok := seen[p.Name]; !ok {
					seen[p.Name] = p.CreationTimestamp.Time
				}
				if _, ok := waits[p.Name]; !ok && ready(p) {
					waits[p.Name] = now.Sub(seen[p.Name])
				}
			}
		}
		out.unavailable += time.Duration(replicas-n) * now.Sub(last)
		if n != lastReady {
			fmt.Fprintf(os.Stderr, "reclaim: %+6.1fs after the warning: %d of %d Ready (%d pods)\n", now.Sub(warned).Seconds(), n, replicas, len(list))
			lastReady = n
		}
		last = now
		Expect(c.List(ctx, &claims)).To(Succeed())
		for _, nc := range claims.Items {
			if !before[nc.Name] && out.replacementBeforeReclaim == -time.Hour {
				if cond := meta.FindStatusCondition(nc.Status.Conditions, v1.ConditionInitialized); cond != nil && cond.Status == metav1.ConditionTrue {
					out.replacementBeforeReclaim = reclaimAt.Sub(now)
				}
			}
		}
		// Done once the reclaim is past and every pod has been Ready for 5 s.
		switch {
		case now.Before(reclaimAt.Add(2*time.Second)) || n < replicas:
			steady = time.Time{}
		case steady.IsZero():
			steady = now
		case now.Sub(steady) > 5*time.Second:
			for _, w := range waits {
				out.longestWait = max(out.longestWait, w)
			}
			return out
		}
	}
	Fail(fmt.Sprintf("the Deployment did not recover within two minutes of the reclaim: %d Ready", readyCount()))
	return out
}

func report(name string, o outcome) {
	line := fmt.Sprintf("%s: %.1f pod-seconds below %d Ready, longest wait of a new pod %.1f s, first new node initialized %.1f s before the reclaim",
		name, o.unavailable.Seconds(), replicas, o.longestWait.Seconds(), o.replacementBeforeReclaim.Seconds())
	AddReportEntry(name, line)
	fmt.Fprintln(os.Stderr, "reclaim: "+line)
}

var _ = Describe("a Spot reclaim of a Deployment behind a PodDisruptionBudget", Ordered, func() {
	ctx := context.Background()
	var with, without outcome

	It("costs (almost) nothing with the interruption queue: the replacement is Ready before the reclaim", func() {
		with = reclaim(ctx, "--interruption-queue="+queue)
		report("with the queue", with)
		Expect(with.replacementBeforeReclaim).To(BeNumerically(">", 0), "the replacement initialized before the reclaim")
		// A pod moves only once its new place is Ready: it waits about as
		// long as a pod takes to start, not for a node to boot.
		Expect(with.longestWait).To(BeNumerically("<", 5*time.Second))
		Expect(with.longestWait).To(BeNumerically("<", bootTime))
		// The budget lets one pod go at a time, and each goes only when its
		// place is Ready: a few pod-seconds in all, not a node's boot.
		Expect(with.unavailable).To(BeNumerically("<", 5*time.Second))
	})

	It("costs a node's worth of pods for a launch without it", func() {
		without = reclaim(ctx)
		report("without the queue", without)
		Expect(without.unavailable).To(BeNumerically(">", with.unavailable), "the queue saves unavailability")
		Expect(without.longestWait).To(BeNumerically(">=", bootTime), "without it, the pods of the reclaimed node wait for a node to boot")
	})
})
