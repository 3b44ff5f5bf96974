// Package e2e_test runs the whole loop as `make run` does — control plane,
// the real kube-scheduler and kube-controller-manager, KWOK, the EC2 simulator
// and Backstop — and checks what a user would see.
package e2e_test

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/test"
	"github.com/backstop-sh/backstop/test/dashboard"
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
	queue   = "backstop-interruptions"
	// scrapeEvery is how often the controller's metrics are scraped, as a
	// Prometheus server would.
	scrapeEvery = 2 * time.Second
)

var _ = Describe("200 pods on a local cluster", Ordered, func() {
	var (
		ctx     = context.Background()
		cluster *local.Cluster
		c       client.Client
		// store holds the controller's metrics, scraped all along.
		store       *dashboard.Store
		scrapeStart time.Time
		stopScrape  func() time.Time
	)

	BeforeAll(func() {
		binary, err := test.BuildController(GinkgoT().TempDir())
		Expect(err).NotTo(HaveOccurred())
		metricsAddr := freeAddress()
		cluster, err = local.Start(ctx, local.Options{
			Bin: filepath.Join(test.Root, "bin"), Dir: GinkgoT().TempDir(),
			Simulator: ec2sim.Config{Region: "ap-northeast-2", ClusterTag: "my-cluster", Faults: ec2sim.Faults{
				Capacity: []ec2sim.CapacityRule{{CapacityType: "spot", Max: spotCap}},
			}, InterruptionQueue: queue, SpotNotice: ec2sim.Duration{Duration: 20 * time.Second}},
			ControllerFlags: []string{"--batch-idle-duration=1s", "--disruption-interval=2s", "--gc-interval=5s",
				"--metrics-bind-address=" + metricsAddr, "--interruption-queue=" + queue},
			// As a user runs it: its own process, installed by the charts,
			// with the chart's service account and RBAC, nothing more.
			ControllerBinary: binary,
			Charts:           true,
			Log:              zap.New(zap.WriteTo(GinkgoWriter)),
		})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(cluster.Stop)
		c = cluster.Client
		_, err = cluster.Helm(ctx, "install", "backstop-nodepools", filepath.Join(test.Root, "charts", "backstop-nodepools"),
			"--namespace", "default", "--values", filepath.Join(test.Root, "test", "fixtures", "e2e-nodepools.yaml"))
		Expect(err).NotTo(HaveOccurred())

		store, err = dashboard.NewStore(GinkgoT().TempDir())
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(store.Close)
		scrapeStart = time.Now()
		stopScrape = scrape(store, "http://"+metricsAddr+"/metrics", map[string]string{"job": "karpenter", "instance": metricsAddr})
	})

	AfterEach(func() {
		if CurrentSpecReport().Failed() {
			AddReportEntry("controller", cluster.ControllerReport(60))
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

	It("replaces a Spot node EC2 reclaims, and every pod runs again", func() {
		var nodes corev1.NodeList
		Expect(c.List(ctx, &nodes, client.MatchingLabels{v1.CapacityTypeLabelKey: v1.CapacityTypeSpot})).To(Succeed())
		Expect(nodes.Items).NotTo(BeEmpty())
		victim := nodes.Items[0]
		id := victim.Spec.ProviderID[strings.LastIndex(victim.Spec.ProviderID, "/")+1:]
		Expect(cluster.Sim.Interrupt(id)).To(BeTrue(), "instance %s", id)
		Eventually(func() bool {
			var n corev1.Node
			return apierrors.IsNotFound(c.Get(ctx, client.ObjectKey{Name: victim.Name}, &n))
		}, 2*time.Minute, time.Second).Should(BeTrue(), "the reclaimed node is removed")
		Eventually(running, 2*time.Minute, time.Second).Should(Equal(replicas), "every pod runs again")
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
	// events lists the notes of events about a pod with the reason.
	notes := func(pod, reason string) []string {
		var evs eventsv1.EventList
		Expect(c.List(ctx, &evs, client.InNamespace("default"))).To(Succeed())
		var out []string
		for _, e := range evs.Items {
			if e.Regarding.Name == pod && e.Reason == reason {
				out = append(out, e.Note)
			}
		}
		return out
	}
	claimCount := func() int {
		var claims v1.NodeClaimList
		Expect(c.List(ctx, &claims)).To(Succeed())
		return len(claims.Items)
	}

	It("gives a pod whose host port a DaemonSet holds on every node no node, and says why", func() {
		labels := map[string]string{"app": "node-exporter"}
		port := []corev1.ContainerPort{{ContainerPort: 9100, HostPort: 9100, Protocol: corev1.ProtocolTCP}}
		ds := &appsv1.DaemonSet{
			ObjectMeta: metav1.ObjectMeta{Name: "node-exporter", Namespace: "default"},
			Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}}, Containers: []corev1.Container{{
					Name: "exporter", Image: "exporter", Ports: port,
					Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m")}},
				}}},
			}},
		}
		Expect(c.Create(ctx, ds)).To(Succeed())
		DeferCleanup(func() { Expect(c.Delete(ctx, ds)).To(Succeed()) })
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "wants-9100", Namespace: "default"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "app", Ports: port,
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}},
		}}}}
		Expect(c.Create(ctx, pod)).To(Succeed())
		DeferCleanup(func() { Expect(c.Delete(ctx, pod)).To(Succeed()) })
		Eventually(func() []string { return notes("wants-9100", "FailedScheduling") }, time.Minute, time.Second).Should(ContainElement(
			ContainSubstring("a DaemonSet pod takes the pod's host port on every node the pool can make")))
		var evs eventsv1.EventList
		Expect(c.List(ctx, &evs, client.InNamespace("default"))).To(Succeed())
		var reporters []string
		for _, e := range evs.Items {
			if e.Regarding.Name == "wants-9100" && strings.Contains(e.Note, "a DaemonSet pod takes") {
				reporters = append(reporters, e.ReportingController)
			}
		}
		Expect(reporters).To(ContainElement("backstop"), "Backstop reports its events under its own name")
		Expect(reporters).To(HaveEach("backstop"))
		Consistently(claimCount, 15*time.Second, time.Second).Should(BeZero(), "no NodeClaim for a pod that could never bind")
	})

	It("makes at most one NodeClaim per back-off period for a pod kube-scheduler will not bind where it was planned", func() {
		// A local volume pinned to a zone no node has: kube-scheduler refuses
		// every node ("didn't match PersistentVolume's node affinity"); Backstop's planner does
		// not model volumes, so it believes a new node will do. Each node it
		// makes stays empty and is removed as empty, and the pod is planned again.
		pv := &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{Name: "pinned"},
			Spec: corev1.PersistentVolumeSpec{
				Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
				AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				StorageClassName:       "manual",
				ClaimRef:               &corev1.ObjectReference{Namespace: "default", Name: "pinned"},
				PersistentVolumeSource: corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: "/mnt/disk"}},
				NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
					MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelTopologyZone, Operator: corev1.NodeSelectorOpIn, Values: []string{"nowhere-1z"}}},
				}}}},
			},
		}
		Expect(c.Create(ctx, pv)).To(Succeed())
		pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "pinned", Namespace: "default"}, Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: ptr.To("manual"), VolumeName: "pinned",
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		}}
		Expect(c.Create(ctx, pvc)).To(Succeed())
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pinned", Namespace: "default"}, Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: "app",
				Resources:    corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}},
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "pinned"}}}},
		}}
		Expect(c.Create(ctx, pod)).To(Succeed())
		DeferCleanup(func() {
			Expect(c.Delete(ctx, pod)).To(Succeed())
			Expect(c.Delete(ctx, pvc)).To(Succeed())
			Expect(c.Delete(ctx, pv)).To(Succeed())
		})

		claimsFor := func() []string {
			seen := map[string]bool{}
			var out []string
			for _, n := range notes("pinned", "Nominated") {
				if strings.HasPrefix(n, "Pod should schedule on: nodeclaim/") && !seen[n] {
					seen[n] = true
					out = append(out, n)
				}
			}
			return out
		}
		Eventually(claimsFor, 2*time.Minute, time.Second).ShouldNot(BeEmpty())
		first := time.Now()
		Eventually(func() []string { return notes("pinned", "SchedulerDisagreed") }, time.Minute, time.Second).Should(ContainElement(
			ContainSubstring("didn't match PersistentVolume's node affinity")), "Backstop says kube-scheduler and its plan disagree, naming kube-scheduler's reason")
		time.Sleep(time.Until(first.Add(75 * time.Second)))
		// Without the back-off a NodeClaim comes every ~10 s (launch, emptiness,
		// plan again); with it, after 0 s, ~20 s and ~50 s (back-offs of 10 s and 20 s).
		Expect(len(claimsFor())).To(BeNumerically("<=", 3), "NodeClaims planned for the pod in 75 s: %v", claimsFor())
	})

	It("fills every panel of Backstop's dashboard and Karpenter's two, from the controller's own metrics, without one Forbidden answer", func() {
		end := stopScrape()
		w := dashboard.Window{Start: scrapeStart, End: end, Step: 5 * time.Second, RateInterval: 20 * time.Second}
		// Only node-exporter's series are not Backstop's to export.
		owned := func(metric string) bool { return !strings.HasPrefix(metric, "node_") }
		var problems []string
		for _, path := range []string{
			filepath.Join(test.Root, "charts", "backstop", "dashboards", "backstop.json"),
			filepath.Join(test.Root, "..", "shared", "anchors", "karpenter-dashboards", "karpenter-capacity-dashboard.json"),
			filepath.Join(test.Root, "..", "shared", "anchors", "karpenter-dashboards", "karpenter-performance-dashboard.json"),
		} {
			d, err := dashboard.Load(path)
			Expect(err).NotTo(HaveOccurred())
			Expect(d.Panels).NotTo(BeEmpty(), path)
			found, err := store.Check(ctx, d, w, owned)
			Expect(err).NotTo(HaveOccurred())
			for _, p := range found {
				problems = append(problems, p.String())
			}
		}
		Expect(problems).To(BeEmpty(), "panels or queries without data:\n%s", strings.Join(problems, "\n"))

		requests, err := store.Query(ctx, `sum by (code) (rest_client_requests_total)`, w)
		Expect(err).NotTo(HaveOccurred())
		Expect(requests).NotTo(BeEmpty(), "the controller's API requests are counted")
		for _, series := range requests {
			Expect(series.Metric.Get("code")).NotTo(Equal("403"), "the chart's RBAC refused some of the controller's requests")
		}
	})

	It("spreads a Deployment over zone ids (topology.k8s.aws/zone-id), and kube-scheduler binds every pod", func() {
		labels := map[string]string{"app": "spread"}
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "spread", Namespace: "default"}, Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](6), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: awsZoneIDKey,
					WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: &metav1.LabelSelector{MatchLabels: labels}}},
				Containers: []corev1.Container{{Name: "app", Image: "app",
					Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}}},
			}},
		}}
		Expect(c.Create(ctx, d)).To(Succeed())
		DeferCleanup(func() { Expect(c.Delete(ctx, d)).To(Succeed()) })
		perZoneID := func() map[string]int {
			var pods corev1.PodList
			Expect(c.List(ctx, &pods, client.InNamespace("default"), client.MatchingLabels(labels))).To(Succeed())
			out := map[string]int{}
			for _, p := range pods.Items {
				if p.Status.Phase != corev1.PodRunning {
					continue
				}
				var n corev1.Node
				Expect(c.Get(ctx, client.ObjectKey{Name: p.Spec.NodeName}, &n)).To(Succeed())
				out[n.Labels[awsZoneIDKey]]++
			}
			return out
		}
		// This account's zones a, b and c are apne2-az4, -az6 and -az1.
		Eventually(perZoneID, 2*time.Minute, time.Second).Should(Equal(map[string]int{"apne2-az4": 2, "apne2-az6": 2, "apne2-az1": 2}))
	})

	It("uninstalls cleanly: NodePools and EC2NodeClass first, then the controller and the CRDs, leaving no instance, instance profile, NodeClaim or finalizer", func() {
		d := &appsv1.Deployment{}
		Expect(c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "inflate"}, d)).To(Succeed())
		d.Spec.Replicas = ptr.To[int32](20)
		Expect(c.Update(ctx, d)).To(Succeed())
		Eventually(running, 2*time.Minute, time.Second).Should(Equal(20))

		_, err := cluster.Helm(ctx, "uninstall", "backstop-nodepools", "--namespace", "default")
		Expect(err).NotTo(HaveOccurred())
		Eventually(claimCount, 2*time.Minute, time.Second).Should(BeZero(), "the NodePools' NodeClaims are removed with them")
		Eventually(func() []string {
			var live []string
			for _, i := range cluster.Sim.Instances() {
				if i.State != "terminated" {
					live = append(live, i.ID+" "+i.State)
				}
			}
			return live
		}, time.Minute, time.Second).Should(BeEmpty(), "every instance is terminated")
		var nodes corev1.NodeList
		Expect(c.List(ctx, &nodes)).To(Succeed())
		Expect(nodes.Items).To(BeEmpty())
		// The chart's EC2NodeClass goes once its NodeClaims have, taking the
		// instance profile Backstop made for it (README: wait for it before
		// uninstalling the controller).
		Eventually(func() int {
			var classes awsv1.EC2NodeClassList
			Expect(c.List(ctx, &classes)).To(Succeed())
			return len(classes.Items)
		}, time.Minute, time.Second).Should(BeZero(), "the EC2NodeClass is let go by its finalizer")
		Expect(cluster.Sim.InstanceProfiles()).To(BeEmpty(), "its instance profile is deleted")

		cluster.StopController()
		for _, release := range []string{"backstop", "backstop-crd"} {
			_, err := cluster.Helm(ctx, "uninstall", release, "--namespace", "default", "--wait")
			Expect(err).NotTo(HaveOccurred())
		}
		Eventually(func() []string {
			var crds apiextensionsv1.CustomResourceDefinitionList
			Expect(c.List(ctx, &crds)).To(Succeed())
			var left []string
			for _, crd := range crds.Items {
				if crd.Spec.Group == v1.Group || crd.Spec.Group == "karpenter.k8s.aws" {
					left = append(left, crd.Name)
				}
			}
			return left
		}, time.Minute, time.Second).Should(BeEmpty(), "no CRD is held by a finalizer")
		var roles rbacv1.ClusterRoleList
		Expect(c.List(ctx, &roles, client.MatchingLabels{"app.kubernetes.io/instance": "backstop"})).To(Succeed())
		Expect(roles.Items).To(BeEmpty())
	})
})

// freeAddress is a loopback address with a port nothing listens on.
// awsZoneIDKey is the zone-id label, spelled as a user writes it.
const awsZoneIDKey = "topology.k8s.aws/zone-id"

func freeAddress() string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer func() { _ = lis.Close() }()
	return lis.Addr().String()
}

// scrape stores url's metrics every scrapeEvery until the returned function
// is called; that returns the time of the last scrape.
func scrape(store *dashboard.Store, url string, target map[string]string) func() time.Time {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var last time.Time
	go func() {
		defer close(done)
		tick := time.NewTicker(scrapeEvery)
		defer tick.Stop()
		for {
			now := time.Now()
			if err := store.Scrape(ctx, url, target, now); err == nil {
				last = now
			} else if ctx.Err() == nil {
				GinkgoWriter.Printf("scrape: %v\n", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return func() time.Time {
		cancel()
		<-done
		return last
	}
}
