package metrics_test

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/controllers/metrics"
	"github.com/backstop-sh/backstop/test"
)

func gauge(reg *prometheus.Registry, name string, want map[string]string) float64 {
	v, _ := test.Metric(reg, name, want)
	return v
}

func series(reg *prometheus.Registry, name string, want map[string]string) int {
	_, n := test.Metric(reg, name, want)
	return n
}

var _ = Describe("the cluster-state gauges of Karpenter's dashboards", func() {
	ctx := context.Background()

	It("report node allocatable, pod and DaemonSet requests, NodePool usage and limits, and pod states", func() {
		pool := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "spot"}, Spec: v1.NodePoolSpec{
			Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100")},
			Template: v1.NodeClaimTemplate{Spec: v1.NodeClaimTemplateSpec{
				NodeClassRef: &v1.NodeClassReference{Group: awsv1.Group, Kind: "EC2NodeClass", Name: "default"}}},
		}}
		Expect(env.Client.Create(ctx, pool)).To(Succeed())
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "i-0123", Labels: map[string]string{
			v1.NodePoolLabelKey: "spot", v1.CapacityTypeLabelKey: "spot", corev1.LabelInstanceTypeStable: "c5.xlarge",
			corev1.LabelTopologyZone: "us-east-1a", corev1.LabelArchStable: "amd64", corev1.LabelOSStable: "linux",
		}}}
		Expect(env.Client.Create(ctx, node)).To(Succeed())
		node.Status.Capacity = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi"), corev1.ResourcePods: resource.MustParse("58")}
		node.Status.Allocatable = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("3920m"), corev1.ResourceMemory: resource.MustParse("7Gi"), corev1.ResourcePods: resource.MustParse("58")}
		Expect(env.Client.Status().Update(ctx, node)).To(Succeed())
		unmanaged := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "system-node"}}
		Expect(env.Client.Create(ctx, unmanaged)).To(Succeed())
		unmanaged.Status.Allocatable = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")}
		Expect(env.Client.Status().Update(ctx, unmanaged)).To(Succeed())

		pod := func(name, cpu string, daemon bool) {
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}, Spec: corev1.PodSpec{NodeName: node.Name,
				Containers: []corev1.Container{{Name: "c", Image: "c", Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}}}}}}
			if daemon {
				p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "agent", UID: "ds-uid", Controller: ptr.To(true)}}
			}
			Expect(env.Client.Create(ctx, p)).To(Succeed())
			p.Status.Phase = corev1.PodRunning
			Expect(env.Client.Status().Update(ctx, p)).To(Succeed())
		}
		pod("web-1", "1", false)
		pod("web-2", "500m", false)
		pod("agent", "250m", true)
		pending := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "waiting"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "c"}}}}
		Expect(env.Client.Create(ctx, pending)).To(Succeed())

		reg := prometheus.NewRegistry()
		// Nothing is refreshed: the gauges are computed when scraped.
		metrics.New(env.Client, clock.RealClock{}, reg)

		at := func(resourceType string) map[string]string {
			return map[string]string{"node_name": "i-0123", "nodepool": "spot", "resource_type": resourceType, "instance_type": "c5.xlarge",
				"capacity_type": "spot", "zone": "us-east-1a", "arch": "amd64", "os": "linux"}
		}
		Expect(gauge(reg, "karpenter_nodes_allocatable", at("cpu"))).To(BeNumerically("~", 3.92))
		Expect(gauge(reg, "karpenter_nodes_allocatable", at("memory"))).To(BeNumerically("==", 7*1024*1024*1024))
		Expect(gauge(reg, "karpenter_nodes_total_pod_requests", at("cpu"))).To(BeNumerically("~", 1.5))
		Expect(gauge(reg, "karpenter_nodes_total_daemon_requests", at("cpu"))).To(BeNumerically("~", 0.25))
		Expect(gauge(reg, "karpenter_nodes_total_pod_requests", at("pods"))).To(BeNumerically("==", 2), "pods count one each")
		na := map[string]string{"nodepool": "N/A", "resource_type": "cpu"}
		Expect(series(reg, "karpenter_nodes_allocatable", na)).To(Equal(1), "a node no NodePool owns is N/A, as the dashboards filter it")
		Expect(gauge(reg, "karpenter_nodes_allocatable", na)).To(BeNumerically("==", 2))
		Expect(gauge(reg, "karpenter_nodepools_usage", map[string]string{"nodepool": "spot", "resource_type": "cpu"})).To(BeNumerically("==", 4))
		Expect(gauge(reg, "karpenter_nodepools_limit", map[string]string{"nodepool": "spot", "resource_type": "cpu"})).To(BeNumerically("==", 100))
		Expect(series(reg, "karpenter_pods_state", map[string]string{"phase": "Running", "nodepool": "spot", "capacity_type": "spot", "instance_type": "c5.xlarge"})).To(Equal(3))
		Expect(series(reg, "karpenter_pods_state", map[string]string{"name": "waiting", "phase": "Pending", "node": ""})).To(Equal(1))
		Expect(series(reg, "karpenter_pods_state", map[string]string{"owner": "DaemonSet/agent"})).To(Equal(1))

		// A pod that goes is gone from the gauges at the next scrape.
		Expect(env.Client.Delete(ctx, pending)).To(Succeed())
		Expect(series(reg, "karpenter_pods_state", map[string]string{"name": "waiting"})).To(BeZero())
	})
})
