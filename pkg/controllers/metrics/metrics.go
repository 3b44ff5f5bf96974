// Package metrics exports the cluster-state gauges Karpenter's Grafana
// dashboards read — nodes' allocatable and requested resources, NodePool
// usage and limits, and pod states — with Karpenter's names and labels, so
// those dashboards work unchanged against Backstop. The values come from the
// manager's informer cache, refreshed on a timer: no extra API calls.
package metrics

import (
	"context"
	"strings"
	"time"

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

// Gauges is the refresher; Start runs it on every replica (a standby's
// dashboards are as good as the leader's).
type Gauges struct {
	client client.Client
	clock  clock.Clock
	// Every is how often the gauges are rebuilt from the cache.
	Every time.Duration

	allocatable, podRequests, daemonRequests *prometheus.GaugeVec
	poolUsage, poolLimit                     *prometheus.GaugeVec
	pods                                     *prometheus.GaugeVec
	startup                                  prometheus.Summary

	// since is when this replica started watching: pods Ready before
	// then are not timed (their start was seen by another, or none).
	since time.Time
	// started are the pods whose start is timed already.
	started map[types.UID]bool
}

// New registers the gauges on reg.
func New(c client.Client, clk clock.Clock, reg prometheus.Registerer) *Gauges {
	g := &Gauges{client: c, clock: clk, Every: 10 * time.Second,
		allocatable: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "karpenter_nodes_allocatable",
			Help: "Allocatable resources of each node, by resource_type."}, nodeLabels),
		podRequests: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "karpenter_nodes_total_pod_requests",
			Help: "Requests of the pods on each node that are not DaemonSet pods, by resource_type."}, nodeLabels),
		daemonRequests: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "karpenter_nodes_total_daemon_requests",
			Help: "Requests of the DaemonSet pods on each node, by resource_type."}, nodeLabels),
		poolUsage: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "karpenter_nodepools_usage",
			Help: "Resources of a NodePool's nodes, by resource_type."}, []string{"nodepool", "resource_type"}),
		poolLimit: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "karpenter_nodepools_limit",
			Help: "A NodePool's limits, by resource_type."}, []string{"nodepool", "resource_type"}),
		pods: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "karpenter_pods_state",
			Help: "One per pod, labelled with its phase and where it runs."},
			[]string{"name", "namespace", "owner", "node", "nodepool", "zone", "arch", "capacity_type", "instance_type", "phase"}),
	}
	g.startup = prometheus.NewSummary(prometheus.SummaryOpts{Name: "karpenter_pods_startup_duration_seconds",
		Help: "Time from a pod's creation to its Ready condition, for pods Ready since this replica started.", Objectives: quantiles})
	g.since, g.started = clk.Now(), map[types.UID]bool{}
	reg.MustRegister(g.allocatable, g.podRequests, g.daemonRequests, g.poolUsage, g.poolLimit, g.pods, g.startup)
	return g
}

// NeedLeaderElection is false: every replica exports them.
func (g *Gauges) NeedLeaderElection() bool { return false }

// Start rebuilds the gauges every Every until ctx ends.
func (g *Gauges) Start(ctx context.Context) error {
	for {
		if err := g.Refresh(ctx); err != nil && ctx.Err() == nil {
			log.FromContext(ctx).Error(err, "refreshing the cluster-state metrics")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-g.clock.After(g.Every):
		}
	}
}

// Refresh rebuilds every gauge from the cache.
func (g *Gauges) Refresh(ctx context.Context) error {
	var nodes corev1.NodeList
	if err := g.client.List(ctx, &nodes); err != nil {
		return err
	}
	var pods corev1.PodList
	if err := g.client.List(ctx, &pods); err != nil {
		return err
	}
	var pools v1.NodePoolList
	if err := g.client.List(ctx, &pools); err != nil {
		return err
	}
	byName := map[string]*corev1.Node{}
	podReqs, daemonReqs := map[string]scheduling.Resources{}, map[string]scheduling.Resources{}
	for i := range nodes.Items {
		byName[nodes.Items[i].Name] = &nodes.Items[i]
	}
	g.pods.Reset()
	live := map[types.UID]bool{}
	for i := range pods.Items {
		pod := &pods.Items[i]
		node := byName[pod.Spec.NodeName]
		g.pods.With(podLabels(pod, node)).Set(1)
		live[pod.UID] = true
		g.timeStartup(pod)
		if node == nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		if scheduling.FollowsNode(pod) {
			daemonReqs[node.Name] = daemonReqs[node.Name].Add(scheduling.PodRequests(pod))
		} else {
			podReqs[node.Name] = podReqs[node.Name].Add(scheduling.PodRequests(pod))
		}
	}
	for uid := range g.started {
		if !live[uid] {
			delete(g.started, uid)
		}
	}
	g.allocatable.Reset()
	g.podRequests.Reset()
	g.daemonRequests.Reset()
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
			g.allocatable.With(labels).Set(q.AsApproximateFloat64())
			g.podRequests.With(labels).Set(float64(podReqs[n.Name].Get(name)) / scale(name))
			g.daemonRequests.With(labels).Set(float64(daemonReqs[n.Name].Get(name)) / scale(name))
		}
	}
	g.poolUsage.Reset()
	g.poolLimit.Reset()
	for i := range pools.Items {
		p := &pools.Items[i]
		for name, q := range usage[p.Name] {
			g.poolUsage.With(prometheus.Labels{"nodepool": p.Name, "resource_type": resourceType(name)}).Set(q.AsApproximateFloat64())
		}
		for name, q := range p.Spec.Limits {
			g.poolLimit.With(prometheus.Labels{"nodepool": p.Name, "resource_type": resourceType(name)}).Set(q.AsApproximateFloat64())
		}
	}
	return nil
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

func nodeLabelValues(n *corev1.Node, pool string, name corev1.ResourceName) prometheus.Labels {
	return prometheus.Labels{
		"node_name": n.Name, "nodepool": pool, "resource_type": resourceType(name),
		"instance_type": n.Labels[corev1.LabelInstanceTypeStable], "capacity_type": n.Labels[v1.CapacityTypeLabelKey],
		"zone": n.Labels[corev1.LabelTopologyZone], "arch": n.Labels[corev1.LabelArchStable], "os": n.Labels[corev1.LabelOSStable],
	}
}

func podLabels(pod *corev1.Pod, node *corev1.Node) prometheus.Labels {
	owner := ""
	if len(pod.OwnerReferences) > 0 {
		owner = pod.OwnerReferences[0].Kind + "/" + pod.OwnerReferences[0].Name
	}
	l := prometheus.Labels{"name": pod.Name, "namespace": pod.Namespace, "owner": owner, "node": pod.Spec.NodeName,
		"nodepool": "", "zone": "", "arch": "", "capacity_type": "", "instance_type": "", "phase": string(pod.Status.Phase)}
	if node != nil {
		l["nodepool"], l["zone"], l["arch"] = node.Labels[v1.NodePoolLabelKey], node.Labels[corev1.LabelTopologyZone], node.Labels[corev1.LabelArchStable]
		l["capacity_type"], l["instance_type"] = node.Labels[v1.CapacityTypeLabelKey], node.Labels[corev1.LabelInstanceTypeStable]
	}
	return l
}
