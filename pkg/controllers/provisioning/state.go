package provisioning

import (
	"context"
	"fmt"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

// IsProvisionable reports whether a pod waits for capacity that Backstop should
// plan: kube-scheduler marked it Unschedulable, it is not bound or nominated to
// a node, and it is not a DaemonSet pod or a mirror pod (those follow nodes).
func IsProvisionable(pod *corev1.Pod) bool {
	if !unplaced(pod) {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled {
			return c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable
		}
	}
	return false
}

// AwaitsScheduler reports whether a pod waits for kube-scheduler's first
// verdict: it is for the default scheduler, not gated, not placed, and has
// no PodScheduled condition yet. In a scale-up kube-scheduler judges about a
// hundred pods a second on a small control plane, so the last of a thousand
// new pods is marked Unschedulable seconds after it was created; planning
// such pods with the rest of the batch asks for their capacity that much
// sooner. The plan puts them on existing room first, as kube-scheduler would.
func AwaitsScheduler(pod *corev1.Pod) bool {
	if !unplaced(pod) || len(pod.Spec.SchedulingGates) > 0 {
		return false
	}
	if pod.Spec.SchedulerName != "" && pod.Spec.SchedulerName != corev1.DefaultSchedulerName {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled {
			return false
		}
	}
	return true
}

// unplaced reports whether a pod still needs a node: not bound or nominated,
// not leaving or finished, and not one that follows its node.
func unplaced(pod *corev1.Pod) bool {
	if pod.Spec.NodeName != "" || pod.Status.NominatedNodeName != "" || pod.DeletionTimestamp != nil {
		return false
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return false
	}
	return !scheduling.FollowsNode(pod)
}

// provisionable reports whether the provisioner plans a pod: marked
// Unschedulable, or awaiting kube-scheduler when planning early.
func (p *Provisioner) provisionable(pod *corev1.Pod) bool {
	return IsProvisionable(pod) || (p.opts.Early && AwaitsScheduler(pod))
}

// snapshot is what one solve sees of the cluster.
type snapshot struct {
	pending []*corev1.Pod
	pools   map[string]*v1.NodePool
	input   *scheduling.Input
	// inFlight names the NodeClaims standing in for nodes not registered yet.
	inFlight map[string]bool
	// displaced are the pods of leaving nodes planned in this batch.
	displaced map[types.UID]bool
	// unsettled counts the pods that need a place: pending ones, those
	// backing off or waiting for kube-scheduler included, and those of
	// leaving nodes.
	unsettled int
}

// listPods lists every pod the cache holds, through Options.ListPods when
// set.
func (p *Provisioner) listPods(ctx context.Context) ([]*corev1.Pod, error) {
	if p.opts.ListPods != nil {
		return p.opts.ListPods(ctx)
	}
	return ReadPods(ctx, p.client)
}

// ReadPods lists every pod through a reader: with the manager's client, the
// cache's own objects, copied into a new list.
func ReadPods(ctx context.Context, r client.Reader) ([]*corev1.Pod, error) {
	var list corev1.PodList
	if err := r.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	pods := make([]*corev1.Pod, len(list.Items))
	for i := range list.Items {
		pods[i] = &list.Items[i]
	}
	return pods, nil
}

// takeSnapshot reads the cluster from the cache and builds the solver's input.
// Pods nominated to in-flight NodeClaims count on those claims, not as pending.
func (p *Provisioner) takeSnapshot(ctx context.Context) (*snapshot, error) {
	// The cache's own pods, nodes and NodeClaims, not copies: a plan only
	// reads them (a pod it must change is copied first, as are taints it
	// adds to), and copying them on every plan was a tenth of the
	// controller's CPU and most of what a scale-up allocated.
	listed := p.clock.Now()
	pods, err := p.listPods(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	var nodes corev1.NodeList
	if err := p.client.List(ctx, &nodes, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	var claims v1.NodeClaimList
	if err := p.client.List(ctx, &claims, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing nodeclaims: %w", err)
	}
	var pools v1.NodePoolList
	if err := p.client.List(ctx, &pools); err != nil {
		return nil, fmt.Errorf("listing nodepools: %w", err)
	}
	var daemonSets appsv1.DaemonSetList
	if err := p.client.List(ctx, &daemonSets); err != nil {
		return nil, fmt.Errorf("listing daemonsets: %w", err)
	}
	var namespaces corev1.NamespaceList
	if err := p.client.List(ctx, &namespaces); err != nil {
		return nil, fmt.Errorf("listing namespaces: %w", err)
	}

	s := &snapshot{pools: map[string]*v1.NodePool{}, inFlight: map[string]bool{}, displaced: map[types.UID]bool{}, input: &scheduling.Input{
		NamespaceLabels: map[string]map[string]string{}, PreferencePolicy: p.opts.PreferencePolicy,
	}}
	for i := range namespaces.Items {
		s.input.NamespaceLabels[namespaces.Items[i].Name] = namespaces.Items[i].Labels
	}
	s.input.DaemonSetPods = daemonSetPods(daemonSets.Items)

	liveClaims := map[string]*v1.NodeClaim{}
	for i := range claims.Items {
		liveClaims[claims.Items[i].Name] = &claims.Items[i]
	}
	p.withCreated(liveClaims)
	lost := p.forgetNominations(liveClaims)

	leaving := leavingNodes(nodes.Items, liveClaims)
	byNode := map[string][]*corev1.Pod{}
	byClaim := map[string][]*corev1.Pod{}
	pendingNow := map[types.UID]bool{}
	pendingKeys := map[types.NamespacedName]bool{}
	var awaiting []awaited
	defer p.forgetBound(pendingNow, pendingKeys, listed)
	for _, pod := range pods {
		switch {
		case pod.Spec.NodeName != "" && leaving[pod.Spec.NodeName] && pod.DeletionTimestamp == nil && scheduling.MustLeave(pod):
			// Its node is being drained or reclaimed: it needs a place
			// before it is evicted, planned like a pending pod once and then
			// counted on the NodeClaim planned for it.
			pendingNow[pod.UID] = true
			s.displaced[pod.UID] = true
			claim, ok := p.nominatedClaim(pod)
			if ok && liveClaims[claim] != nil && liveClaims[claim].Status.NodeName == pod.Spec.NodeName {
				// The nomination that brought it to the node it leaves.
				p.forgetNomination(pod)
				ok = false
			}
			if p.placedFor(pod) == pod.Spec.NodeName {
				p.forgetPlacement(pod)
			}
			switch {
			case ok && liveClaims[claim] != nil && liveClaims[claim].Status.NodeName != "":
				node := liveClaims[claim].Status.NodeName
				byNode[node] = append(byNode[node], pod)
			case ok:
				byClaim[claim] = append(byClaim[claim], pod)
			case p.placedFor(pod) != "":
				byNode[p.placedFor(pod)] = append(byNode[p.placedFor(pod)], pod)
			default:
				moved := pod.DeepCopy()
				moved.Spec.NodeName = ""
				s.pending = append(s.pending, moved)
			}
		case pod.Spec.NodeName != "":
			if pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed {
				byNode[pod.Spec.NodeName] = append(byNode[pod.Spec.NodeName], pod)
			}
		case p.provisionable(pod):
			pendingNow[pod.UID] = true
			pendingKeys[client.ObjectKeyFromObject(pod)] = true
			if n, ok := lost[pod.UID]; ok {
				// Its node initialized and went away without kube-scheduler
				// binding the pod there (emptied, say).
				p.disagreed(ctx, pod, n)
				continue
			}
			if p.backingOff(pod) {
				continue
			}
			claim, ok := p.nominatedClaim(pod)
			switch {
			case ok && liveClaims[claim] != nil && meta.IsStatusConditionTrue(liveClaims[claim].Status.Conditions, v1.ConditionInitialized):
				// Judged once every bound pod is known.
				awaiting = append(awaiting, awaited{pod: pod, claim: liveClaims[claim]})
			case !ok:
				s.pending = append(s.pending, pod)
			case liveClaims[claim] != nil && liveClaims[claim].Status.NodeName != "":
				// Registered, but kube-scheduler has not bound the pod yet:
				// it still takes its room on that node.
				node := liveClaims[claim].Status.NodeName
				byNode[node] = append(byNode[node], pod)
			default:
				byClaim[claim] = append(byClaim[claim], pod)
			}
		}
	}
	allocatable := make(map[string]scheduling.Resources, len(nodes.Items))
	for i := range nodes.Items {
		allocatable[nodes.Items[i].Name] = scheduling.ResourcesFromList(nodes.Items[i].Status.Allocatable)
	}
	for _, a := range awaiting {
		if p.stillWaits(ctx, a, allocatable, byNode) {
			byNode[a.claim.Status.NodeName] = append(byNode[a.claim.Status.NodeName], a.pod)
		} else if !p.backingOff(a.pod) {
			s.pending = append(s.pending, a.pod)
		}
	}
	s.unsettled = len(pendingNow)

	for i := range pools.Items {
		pool := &pools.Items[i]
		s.pools[pool.Name] = pool
	}

	// A Node whose NodeClaim has not registered it yet is the same capacity as
	// that in-flight NodeClaim: count it once, as the claim, with the pods
	// already bound to it. The NodeClaim's record of its instance may not
	// have reached the cache when the node joins; the launch said which.
	unregistered := p.launchedInstances(liveClaims)
	for _, c := range liveClaims {
		if c.Status.ProviderID != "" && c.Status.NodeName == "" && c.DeletionTimestamp == nil {
			unregistered[c.Status.ProviderID] = c.Name
		}
	}
	// What registered NodeClaims' instances offer, by node: a node reports
	// its allocatable, and its device plugins their resources, some time
	// after it registers.
	launchedRoom := map[string]scheduling.Resources{}
	for _, c := range liveClaims {
		if c.Status.NodeName != "" && len(c.Status.Allocatable) > 0 {
			launchedRoom[c.Status.NodeName] = scheduling.ResourcesFromList(c.Status.Allocatable)
		}
	}
	usage := map[string]scheduling.Resources{}
	counts := map[string]int64{}
	for i := range nodes.Items {
		n := &nodes.Items[i]
		if claim, ok := unregistered[n.Spec.ProviderID]; ok && n.Spec.ProviderID != "" {
			byClaim[claim] = append(byClaim[claim], byNode[n.Name]...)
			continue
		}
		if leaving[n.Name] {
			// Nothing is planned onto a node on its way out.
			continue
		}
		alloc := allocatable[n.Name]
		if launched, ok := launchedRoom[n.Name]; ok && n.Labels[v1.InitializedLabelKey] != "true" {
			// A node still initializing offers what its instance was
			// launched with, while it has not reported all of that yet.
			alloc = alloc.Max(launched)
		}
		s.input.Nodes = append(s.input.Nodes, &scheduling.ExistingNode{
			Name: n.Name, Labels: n.Labels, Taints: schedulableTaints(n, s.pools[n.Labels[v1.NodePoolLabelKey]]),
			Allocatable: alloc, Pods: p.keepWhileRoom(s, alloc, byNode[n.Name]),
		})
		if pool := n.Labels[v1.NodePoolLabelKey]; pool != "" {
			usage[pool] = usage[pool].Add(scheduling.ResourcesFromList(n.Status.Capacity))
			counts[pool]++
		}
	}

	typesByPool := map[string][]*scheduling.InstanceType{}
	notReady := map[string]string{}
	for name, pool := range s.pools {
		if pool.DeletionTimestamp != nil {
			notReady[name] = "the NodePool is being deleted"
			continue
		}
		if pool.Static() {
			notReady[name] = v1.StaticNotForPods
			continue
		}
		types, err := p.cloud.InstanceTypes(ctx, pool)
		if cloudprovider.IsNodeClassNotReady(err) {
			notReady[name] = err.Error()
			continue
		}
		if err != nil {
			// Not the pool's fault: the cloud could not be asked. Planning
			// without the pool would send its pods elsewhere for nothing.
			return nil, fmt.Errorf("listing instance types for nodepool %s: %w", name, err)
		}
		typesByPool[name] = types
	}

	// In-flight NodeClaims: launched or launching, their Node not registered yet.
	for _, c := range liveClaims {
		if c.Status.NodeName != "" || c.DeletionTimestamp != nil {
			continue
		}
		s.inFlight[c.Name] = true
		if id := reservedUnlaunched(c); id != "" {
			if s.input.ReservedInFlight == nil {
				s.input.ReservedInFlight = map[string]int{}
			}
			s.input.ReservedInFlight[id]++
		}
		poolName := c.Labels[v1.NodePoolLabelKey]
		view := p.claims.view(c, typesByPool[poolName])
		alloc, capacity, labels := view.allocatable, view.capacity, view.labels
		s.input.Nodes = append(s.input.Nodes, &scheduling.ExistingNode{
			Name: c.Name, Labels: labels, Taints: c.Spec.Taints, Allocatable: alloc,
			Pods: p.keepWhileRoom(s, alloc, withDaemons(byClaim[c.Name], s.input.DaemonSetPods, labels, c.Spec.Taints)),
		})
		if poolName != "" {
			usage[poolName] = usage[poolName].Add(capacity)
			counts[poolName]++
		}
	}

	p.claims.prune(liveClaims)
	s.input.Pods = s.pending
	for name, pool := range s.pools {
		sp, err := schedulingPool(pool)
		if err != nil {
			notReady[name] = err.Error()
			sp = &scheduling.NodePool{Name: name}
		}
		sp.InstanceTypes = typesByPool[name]
		sp.Usage, sp.Nodes = usage[name], counts[name]
		sp.NotReady = notReady[name]
		s.input.NodePools = append(s.input.NodePools, sp)
	}
	return s, nil
}

// keepWhileRoom returns the pods that keep their room on a node or an
// in-flight NodeClaim: those bound there and the DaemonSet pods it will run,
// then the pods planned there (nominated, or moving from a leaving node)
// while room lasts. kube-scheduler binds pods in its own order, not the
// plan's: when it fills a node with pods planned elsewhere, the pods planned
// for that node no longer have room there, and the room they were planned
// away from looks free. Those pods are planned again, so that room is not
// given away twice.
func (p *Provisioner) keepWhileRoom(s *snapshot, alloc scheduling.Resources, pods []*corev1.Pod) []*corev1.Pod {
	var used scheduling.Resources
	var planned []*corev1.Pod
	kept := make([]*corev1.Pod, 0, len(pods))
	for _, pod := range pods {
		// A DaemonSet pod still to come has no UID: it is the DaemonSet's
		// template.
		if pod.UID != "" && (pod.Spec.NodeName == "" || s.displaced[pod.UID]) {
			planned = append(planned, pod)
			continue
		}
		used = used.Add(scheduling.PodRequests(pod))
		kept = append(kept, pod)
	}
	for _, pod := range planned {
		need := used.Add(scheduling.PodRequests(pod))
		if !need.Fits(alloc) {
			p.forgetNomination(pod)
			if s.displaced[pod.UID] {
				p.forgetPlacement(pod)
				pod = pod.DeepCopy()
				pod.Spec.NodeName = ""
			}
			s.pending = append(s.pending, pod)
			continue
		}
		used = need
		kept = append(kept, pod)
	}
	return kept
}

// leavingNodes are the nodes whose pods must find another place: tainted
// for disruption (drained, or warned of a Spot reclaim), or being deleted,
// or whose NodeClaim is. A node tainted because it is being replaced,
// replacement first, is not leaving yet: its replacements were planned for
// its pods, which go when it drains, once they have initialized.
func leavingNodes(nodes []corev1.Node, claims map[string]*v1.NodeClaim) map[string]bool {
	leaving := map[string]bool{}
	replacing := map[string]bool{}
	for _, c := range claims {
		if c.DeletionTimestamp != nil && c.Status.NodeName != "" {
			leaving[c.Status.NodeName] = true
		}
		if c.Annotations[v1.ReplacingAnnotation] != "" && c.Annotations[v1.InterruptedAnnotation] == "" && c.Status.NodeName != "" {
			replacing[c.Status.NodeName] = true
		}
	}
	for i := range nodes {
		n := &nodes[i]
		if n.DeletionTimestamp != nil || (scheduling.HasTaint(n.Spec.Taints, v1.DisruptedNoScheduleTaint) && !replacing[n.Name]) {
			leaving[n.Name] = true
		}
	}
	return leaving
}

// withDaemons adds to the pods of an in-flight NodeClaim the DaemonSet pods
// that will run on its node and are not there yet: they will take their
// requests and host ports before anything planned there can.
func withDaemons(pods, daemons []*corev1.Pod, labels map[string]string, taints []corev1.Taint) []*corev1.Pod {
	present := map[string]bool{}
	for _, p := range pods {
		for _, ref := range p.OwnerReferences {
			if ref.Kind == "DaemonSet" {
				present[p.Namespace+"/"+ref.Name] = true
			}
		}
	}
	out := append([]*corev1.Pod(nil), pods...)
	for _, ds := range daemons {
		if !present[ds.Namespace+"/"+ds.Name] && scheduling.RunsOn(ds, labels, taints) {
			out = append(out, ds)
		}
	}
	return out
}

// ephemeralTaints go away by themselves once a new node is up.
var ephemeralTaints = map[string]bool{
	v1.UnregisteredTaintKey:                          true,
	corev1.TaintNodeNotReady:                         true,
	corev1.TaintNodeUnreachable:                      true,
	"node.cloudprovider.kubernetes.io/uninitialized": true,
}

// schedulableTaints are the taints that keep pods off a node for good. A node
// of ours that has not finished initializing still carries its pool's startup
// taints and the usual not-ready taints; the pods planned for it must not be
// planned again elsewhere because of them.
func schedulableTaints(n *corev1.Node, pool *v1.NodePool) []corev1.Taint {
	if pool == nil || n.Labels[v1.InitializedLabelKey] == "true" {
		return n.Spec.Taints
	}
	startup := map[string]bool{}
	for _, t := range pool.Spec.Template.Spec.StartupTaints {
		startup[t.Key] = true
	}
	var out []corev1.Taint
	for _, t := range n.Spec.Taints {
		if !ephemeralTaints[t.Key] && !startup[t.Key] {
			out = append(out, t)
		}
	}
	return out
}

// claimViews keep what plans read of each in-flight NodeClaim — its room
// and the labels its node will have — while the NodeClaim and its pool's
// instance types stay the same: working them out parses the NodeClaim's
// requirements and walks every instance type, for every NodeClaim of every
// plan, and a scale-up plans several times a second over hundreds of them.
type claimViews struct {
	mu    sync.Mutex
	views map[string]claimView
}

type claimView struct {
	resourceVersion string
	// types is the pool's instance-type list the view was made from; a
	// refreshed list is a new slice.
	types                 []*scheduling.InstanceType
	allocatable, capacity scheduling.Resources
	// labels are shared by the plans that read them; nothing writes them.
	labels map[string]string
}

func (v *claimViews) view(c *v1.NodeClaim, types []*scheduling.InstanceType) claimView {
	v.mu.Lock()
	defer v.mu.Unlock()
	if cached, ok := v.views[c.Name]; ok && cached.resourceVersion == c.ResourceVersion && sameList(cached.types, types) {
		return cached
	}
	view := claimView{resourceVersion: c.ResourceVersion, types: types, labels: map[string]string{}}
	view.allocatable, view.capacity = claimCapacity(c, types)
	if reqs, err := scheduling.FromAPI(c.Spec.Requirements); err == nil {
		for k, val := range reqs.Labels() {
			view.labels[k] = val
		}
	}
	for k, val := range c.Labels {
		view.labels[k] = val
	}
	if v.views == nil {
		v.views = map[string]claimView{}
	}
	v.views[c.Name] = view
	return view
}

// prune forgets the views of NodeClaims that are gone.
func (v *claimViews) prune(live map[string]*v1.NodeClaim) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for name := range v.views {
		if _, ok := live[name]; !ok {
			delete(v.views, name)
		}
	}
}

// sameList reports whether two instance-type lists are the same slice.
func sameList(a, b []*scheduling.InstanceType) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// claimCapacity is what an in-flight NodeClaim will offer: its launched
// capacity when known, else the least its instance-type options guarantee.
func claimCapacity(c *v1.NodeClaim, types []*scheduling.InstanceType) (allocatable, capacity scheduling.Resources) {
	if len(c.Status.Allocatable) > 0 {
		return scheduling.ResourcesFromList(c.Status.Allocatable), scheduling.ResourcesFromList(c.Status.Capacity)
	}
	reqs, err := scheduling.FromAPI(c.Spec.Requirements)
	if err != nil {
		return scheduling.Resources{}, scheduling.Resources{}
	}
	first := true
	for _, it := range types {
		if r, ok := reqs[corev1.LabelInstanceTypeStable]; ok && !r.Has(it.Name) {
			continue
		}
		a, capa := it.Allocatable(), it.Capacity
		if first {
			allocatable, first = a, false
		} else {
			allocatable = minResources(allocatable, a)
		}
		capacity.CPU, capacity.Memory = max(capacity.CPU, capa.CPU), max(capacity.Memory, capa.Memory)
	}
	return allocatable, capacity
}

func minResources(a, b scheduling.Resources) scheduling.Resources {
	out := scheduling.Resources{CPU: min(a.CPU, b.CPU), Memory: min(a.Memory, b.Memory), Storage: min(a.Storage, b.Storage), Pods: min(a.Pods, b.Pods)}
	for k, v := range a.Extended {
		if w, ok := b.Extended[k]; ok {
			if out.Extended == nil {
				out.Extended = map[corev1.ResourceName]int64{}
			}
			out.Extended[k] = min(v, w)
		}
	}
	return out
}

// daemonSetPods are the DaemonSets' pod templates, as pods.
func daemonSetPods(daemonSets []appsv1.DaemonSet) []*corev1.Pod {
	out := make([]*corev1.Pod, 0, len(daemonSets))
	for i := range daemonSets {
		ds := &daemonSets[i]
		out = append(out, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ds.Namespace, Name: ds.Name, Labels: ds.Spec.Template.Labels}, Spec: ds.Spec.Template.Spec})
	}
	return out
}

// reservedUnlaunched is the capacity reservation a NodeClaim was put in
// and has not launched into yet, or "": the reservation's offerings do not
// count it until the launch.
func reservedUnlaunched(c *v1.NodeClaim) string {
	if c.DeletionTimestamp != nil || c.Status.ProviderID != "" {
		return ""
	}
	return c.Labels[scheduling.ReservationIDLabelKey]
}

// schedulingPool converts a NodePool to the solver's view.
func schedulingPool(pool *v1.NodePool) (*scheduling.NodePool, error) {
	reqs, err := scheduling.FromAPI(pool.Spec.Template.Spec.Requirements)
	if err != nil {
		return nil, fmt.Errorf("spec.template.spec.requirements: %w", err)
	}
	var weight int32
	if pool.Spec.Weight != nil {
		weight = *pool.Spec.Weight
	}
	return &scheduling.NodePool{
		Name: pool.Name, Weight: weight, Requirements: reqs, Labels: pool.Spec.Template.ObjectMeta.Labels,
		Taints: pool.Spec.Template.Spec.Taints, StartupTaints: pool.Spec.Template.Spec.StartupTaints, Limits: pool.Spec.Limits,
	}, nil
}
