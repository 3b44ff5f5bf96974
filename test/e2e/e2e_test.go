// Package e2e_test runs the whole loop as `make run` does — control plane,
// the real kube-scheduler and kube-controller-manager, KWOK, the EC2 simulator
// and Backstop — and checks what a user would see.
package e2e_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/test"
	"github.com/backstop-sh/backstop/test/ec2sim"
	"github.com/backstop-sh/backstop/test/local"
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "End to end")
}

const (
	replicas = 200
	// 200 pods of 1 CPU need about 29 of the batch pool's largest nodes; Spot
	// gets 60% of that.
	spotCap = 17
)

var _ = Describe("200 pods on a local cluster", Ordered, func() {
	var (
		ctx     = context.Background()
		cluster *local.Cluster
		c       client.Client
	)

	BeforeAll(func() {
		var err error
		cluster, err = local.Start(ctx, local.Options{
			Bin: filepath.Join(test.Root, "bin"), Dir: GinkgoT().TempDir(),
			Simulator: ec2sim.Config{Region: "ap-northeast-2", ClusterTag: "my-cluster", Faults: ec2sim.Faults{
				Capacity: []ec2sim.CapacityRule{{CapacityType: "spot", Max: spotCap}},
			}},
			ControllerFlags: []string{"--batch-idle-duration=1s", "--disruption-interval=2s", "--gc-interval=5s"},
			Log:             zap.New(zap.WriteTo(GinkgoWriter)),
		})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(cluster.Stop)
		c = cluster.Client
		objs, err := test.ReadManifests("examples.yaml")
		Expect(err).NotTo(HaveOccurred())
		for _, o := range objs {
			Expect(c.Create(ctx, o)).To(Succeed())
		}
	})

	running := func() int {
		var pods corev1.PodList
		Expect(c.List(ctx, &pods, client.InNamespace("default"), client.MatchingLabels{"app": "inflate"})).To(Succeed())
		n := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning {
				n++
			}
		}
		return n
	}

	It("runs every pod, Spot first and On-Demand for the rest when Spot runs out", func() {
		start := time.Now()
		Expect(c.Create(ctx, local.Inflate(replicas))).To(Succeed())
		Eventually(running, 5*time.Minute, time.Second).Should(Equal(replicas))
		took := time.Since(start)
		AddReportEntry("first pod Pending to last pod Running", took.String())
		GinkgoWriter.Printf("200 pods: first Pending to last Running in %s\n", took)

		var claims v1.NodeClaimList
		Expect(c.List(ctx, &claims)).To(Succeed())
		byType := map[string]int{}
		for _, cl := range claims.Items {
			pool, ct := cl.Labels[v1.NodePoolLabelKey], cl.Labels[v1.CapacityTypeLabelKey]
			byType[pool+"/"+ct]++
			Expect(map[string]string{"batch": "spot", "batch-fallback": "on-demand"}).To(HaveKeyWithValue(pool, ct), "NodeClaim %s", cl.Name)
		}
		Expect(byType["batch/spot"]).To(BeNumerically("<=", spotCap))
		Expect(byType["batch/spot"]).To(BeNumerically(">", 0))
		Expect(byType["batch-fallback/on-demand"]).To(BeNumerically(">", 0), "the rest falls back to On-Demand")
		GinkgoWriter.Printf("NodeClaims: %v\n", byType)

		var nodes corev1.NodeList
		Expect(c.List(ctx, &nodes)).To(Succeed())
		Expect(nodes.Items).To(HaveLen(len(claims.Items)))
		for _, n := range nodes.Items {
			Expect(n.Labels).To(HaveKey(v1.NodePoolLabelKey), "node %s", n.Name)
			Expect(n.Labels).To(HaveKeyWithValue(v1.CapacityTypeLabelKey, map[string]string{"batch": "spot", "batch-fallback": "on-demand"}[n.Labels[v1.NodePoolLabelKey]]), "node %s", n.Name)
			Expect(n.Labels).To(HaveKeyWithValue(v1.InitializedLabelKey, "true"), "node %s", n.Name)
		}
	})

	It("removes every NodeClaim, Node and instance after scaling to zero", func() {
		d := &appsv1.Deployment{}
		Expect(c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "inflate"}, d)).To(Succeed())
		d.Spec.Replicas = ptr.To[int32](0)
		Expect(c.Update(ctx, d)).To(Succeed())
		Eventually(func() int {
			var claims v1.NodeClaimList
			Expect(c.List(ctx, &claims)).To(Succeed())
			return len(claims.Items)
		}, 5*time.Minute, time.Second).Should(BeZero())
		Eventually(func() int {
			var nodes corev1.NodeList
			Expect(c.List(ctx, &nodes)).To(Succeed())
			return len(nodes.Items)
		}, time.Minute).Should(BeZero())
		for _, i := range cluster.Sim.Instances() {
			Expect(i.State).To(Equal("terminated"), "instance %s", i.ID)
		}
	})
})
