// Package metrics exports the cluster-state gauges Karpenter's Grafana
// dashboards read — nodes' allocatable and requested resources, NodePool
// usage and limits, and pod states — with Karpenter's names and labels, so
// those dashboards work unchanged against Backstop. The values are computed
// from the manager's informer cache when scraped: no extra API calls, and no
// series kept in memory between scrapes (one per pod and one per node and
// resource would be, rebuilt every few seconds).
package metrics

import (
	"context"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

// noPool is the nodepool label of a node no NodePool owns, as Karpenter's
// dashboards filter it ("N/A").
const noPool = "N/A"

var nodeLabels = []string{"node_name", "nodepool", "resource_type", "instance_type", "capacity_type", "zone", "arch", "os"}

// Gauges is a Prometheus collector over the cache, and the pod start-up
// timer; Start runs the timer on every replica (a standby's dashboards are as
// good as the leader's).
type Gauges struct {
	client client.Client
	clock  clock.Clock
	log    logr.Logger
	// Every is how often pods are looked at for their start-up time.
	Every time.Duration

	allocatable, podRequests, daemonRequests *prometheus.Desc
	poolUsage, poolLimit                     *prometheus.Desc
	pods                                     *prometheus.Desc
	startup                                  prometheus.Summary

	// since is when this replica started watching: pods Ready before
	// then are not timed (their start was seen by another, or none).
	since time.Time
	// started are the pods whose start is timed already.
	started map[types.UID]bool
}

// New registers the gauges on reg.
func New(c client.Client, clk clock.Clock, reg prometheus.Registerer) *Gauges {
	poolLabels := []string{"nodepool", "resource_type"}
	g := &Gauges{client: c, clock: clk, log: log.Log.WithName("metrics"), Every: 10 * time.Second,
		allocatable: prometheus.NewDesc("karpenter_nodes_allocatable",
			"Allocatable resources of each node, by resource_type.", nodeLabels, nil),
		podRequests: prometheus.NewDesc("karpenter_nodes_total_pod_requests",
			"Requests of the pods on each node that are not DaemonSet pods, by resource_type.", nodeLabels, nil),
		daemonRequests: prometheus.NewDesc("karpenter_nodes_total_daemon_requests",
			"Requests of the DaemonSet pods on each node, by resource_type.", nodeLabels, nil),
		poolUsage: prometheus.NewDesc("karpenter_nodepools_usage", "Resources of a NodePool's nodes, by resource_type.", poolLabels, nil),
		poolLimit: prometheus.NewDesc("karpenter_nodepools_limit", "A NodePool's limits, by resource_type.", poolLabels, nil),
		pods:      prometheus.NewDesc("karpenter_pods_state", "One per pod, labelled with its phase and where it runs.", podLabelNames, nil),
	}
	g.startup = prometheus.NewSummary(prometheus.SummaryOpts{Name: "karpenter_pods_startup_duration_seconds",
		Help: "Time from a pod's creation to its Ready condition, for pods Ready since this replica started.", Objectives: quantiles})
	g.since, g.started = clk.Now(), map[types.UID]bool{}
	reg.MustRegister(g, g.startup)
	return g
}

// NeedLeaderElection is false: every replica exports them.
func (g *Gauges) NeedLeaderElection() bool { return false }

// Start looks at pods every Every, to time their start-ups, until ctx ends.
func (g *Gauges) Start(ctx context.Context) error {
	for {
		if err := g.Refresh(ctx); err != nil && ctx.Err() == nil {
			log.FromContext(ctx).Error(err, "timing pod start-ups")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-g.clock.After(g.Every):
		}
	}
}

// Refresh times the start-ups of pods that became Ready since it last looked.
func (g *Gauges) Refresh(ctx context.Context) error {
	var pods corev1.PodList
	if err := g.client.List(ctx, &pods, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	live := make(map[types.UID]bool, len(pods.Items))
	for i := range pods.Items {
		live[pods.Items[i].UID] = true
		g.timeStartup(&pods.Items[i])
	}
	for uid := range g.started {
		if !live[uid] {
			delete(g.started, uid)
		}
	}
	return nil
}

// Describe sends the gauges' descriptions.
func (g *Gauges) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{g.allocatable, g.podRequests, g.daemonRequests, g.poolUsage, g.poolLimit, g.pods} {
		ch <- d
	}
}

// Collect computes every gauge from the cache, read without copies (nothing
// here writes to what it reads).
func (g *Gauges) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var nodes corev1.NodeList
	var pods corev1.PodList
	var pools v1.NodePoolList
	for _, list := range []client.ObjectList{&nodes, &pods, &pools} {
		if err := g.client.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
			g.log.Error(err, "reading the cache for the cluster-state metrics")
			return
		}
	}
	byName := make(map[string]*corev1.Node, len(nodes.Items))
	for i := range nodes.Items {
		byName[nodes.Items[i].Name] = &nodes.Items[i]
	}
	podReqs, daemonReqs := map[string]scheduling.Resources{}, map[string]scheduling.Resources{}
	for i := range pods.Items {
		pod := &pods.Items[i]
		node := byName[pod.Spec.NodeName]
		ch <- prometheus.MustNewConstMetric(g.pods, prometheus.GaugeValue, 1, podLabelValues(pod, node)...)
		if node == nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		if scheduling.FollowsNode(pod) {
			daemonReqs[node.Name] = daemonReqs[node.Name].Add(scheduling.PodRequests(pod))
		} else {
			podReqs[node.Name] = podReqs[node.Name].Add(scheduling.PodRequests(pod))
		}
	}
	usage := map[string]corev1.ResourceList{}
	for i := range nodes.Items {
		n := &nodes.Items[i]
		pool := n.Labels[v1.NodePoolLabelKey]
		if pool == "" {
			pool = noPool
		} else {
			addTo(usage, pool, n.Status.Capacity)
		}
		for name, q := range n.Status.Allocatable {
			labels := nodeLabelValues(n, pool, name)
			ch <- prometheus.MustNewConstMetric(g.allocatable, prometheus.GaugeValue, q.AsApproximateFloat64(), labels...)
			ch <- prometheus.MustNewConstMetric(g.podRequests, prometheus.GaugeValue, float64(podReqs[n.Name].Get(name))/scale(name), labels...)
			ch <- prometheus.MustNewConstMetric(g.daemonRequests, prometheus.GaugeValue, float64(daemonReqs[n.Name].Get(name))/scale(name), labels...)
		}
	}
	for i := range pools.Items {
		p := &pools.Items[i]
		for name, q := range usage[p.Name] {
			ch <- prometheus.MustNewConstMetric(g.poolUsage, prometheus.GaugeValue, q.AsApproximateFloat64(), p.Name, resourceType(name))
		}
		for name, q := range p.Spec.Limits {
			ch <- prometheus.MustNewConstMetric(g.poolLimit, prometheus.GaugeValue, q.AsApproximateFloat64(), p.Name, resourceType(name))
		}
	}
}

// timeStartup observes, once, how long a pod took from creation to Ready.
func (g *Gauges) timeStartup(pod *corev1.Pod) {
	if g.started[pod.UID] {
		return
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && !c.LastTransitionTime.Time.Before(g.since) {
			g.started[pod.UID] = true
			g.startup.Observe(c.LastTransitionTime.Sub(pod.CreationTimestamp.Time).Seconds())
		}
	}
}

// scale undoes scheduling.Resources' units: CPU is kept in millicores.
func scale(name corev1.ResourceName) float64 {
	if name == corev1.ResourceCPU {
		return 1000
	}
	return 1
}

func addTo(usage map[string]corev1.ResourceList, pool string, list corev1.ResourceList) {
	if usage[pool] == nil {
		usage[pool] = corev1.ResourceList{}
	}
	for name, q := range list {
		sum := usage[pool][name]
		sum.Add(q)
		usage[pool][name] = sum
	}
}

// resourceType is Karpenter's label value: cpu, memory, pods, ephemeral_storage, nvidia_com_gpu.
func resourceType(name corev1.ResourceName) string {
	return strings.NewReplacer("-", "_", ".", "_", "/", "_").Replace(string(name))
}

// nodeLabelValues are the values of nodeLabels, in order.
func nodeLabelValues(n *corev1.Node, pool string, name corev1.ResourceName) []string {
	return []string{n.Name, pool, resourceType(name), n.Labels[corev1.LabelInstanceTypeStable], n.Labels[v1.CapacityTypeLabelKey],
		n.Labels[corev1.LabelTopologyZone], n.Labels[corev1.LabelArchStable], n.Labels[corev1.LabelOSStable]}
}

var podLabelNames = []string{"name", "namespace", "owner", "node", "nodepool", "zone", "arch", "capacity_type", "instance_type", "phase"}

// podLabelValues are the values of podLabelNames, in order.
func podLabelValues(pod *corev1.Pod, node *corev1.Node) []string {
	owner := ""
	if len(pod.OwnerReferences) > 0 {
		owner = pod.OwnerReferences[0].Kind + "/" + pod.OwnerReferences[0].Name
	}
	var pool, zone, arch, capacityType, instanceType string
	if node != nil {
		pool, zone, arch = node.Labels[v1.NodePoolLabelKey], node.Labels[corev1.LabelTopologyZone], node.Labels[corev1.LabelArchStable]
		capacityType, instanceType = node.Labels[v1.CapacityTypeLabelKey], node.Labels[corev1.LabelInstanceTypeStable]
	}
	return []string{pod.Name, pod.Namespace, owner, pod.Spec.NodeName, pool, zone, arch, capacityType, instanceType, string(pod.Status.Phase)}
}
