// Package plancheck verifies a scheduling plan independently of the scheduler:
// it uses Kubernetes' own helpers for node affinity, taints and pod requests,
// and replays the plan pod by pod the way a sequential kube-scheduler binding
// in plan order would see it, with every planned node in place.
//
// A NodeClaim can become any of its instance-type options in any of its allowed
// offerings, so every constraint is checked against every such resolution.
package plancheck

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	resourcehelper "k8s.io/component-helpers/resource"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/klog/v2"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

// world is every node after the plan: existing nodes and planned ones.
type world struct {
	in    *scheduling.Input
	plan  *scheduling.Plan
	nodes []*wnode
	byKey map[string]*wnode
	errs  []string
}

// wnode is a node of the world. A planned node has several possible label sets
// (one per instance type, offering and multi-valued label); a label is known
// when every resolution agrees on it.
type wnode struct {
	name        string
	resolutions []*corev1.Node
	taints      []corev1.Taint
	pods        []*corev1.Pod
	allocatable []corev1.ResourceList // per resolution, less DaemonSet pods
	claim       *scheduling.NewNodeClaim
	pool        string
	// daemons are the DaemonSet pods that will run on a planned node (on
	// any of its resolutions): their host ports are taken.
	daemons    []*corev1.Pod
	labelCache map[string]labelState
}

type labelState struct {
	value          string
	present, known bool
}

func (w *world) fail(format string, args ...any) {
	w.errs = append(w.errs, fmt.Sprintf(format, args...))
}

// Check returns every violation it finds; none means the plan is valid.
func Check(in *scheduling.Input, plan *scheduling.Plan) []string {
	w := &world{in: in, plan: plan, byKey: map[string]*wnode{}}
	w.build()
	w.checkAccounting()
	w.replay()
	w.checkCapacity()
	w.checkLimits()
	return w.errs
}

func (w *world) build() {
	for _, n := range w.in.Nodes {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: n.Labels}, Spec: corev1.NodeSpec{Taints: n.Taints}}
		wn := &wnode{name: n.Name, resolutions: []*corev1.Node{node}, taints: n.Taints, allocatable: []corev1.ResourceList{n.Allocatable.List()}}
		wn.pods = append(wn.pods, n.Pods...)
		w.nodes = append(w.nodes, wn)
		w.byKey["node/"+n.Name] = wn
	}
	pools := map[string]*scheduling.NodePool{}
	for _, p := range w.in.NodePools {
		pools[p.Name] = p
	}
	for i, c := range w.plan.NewNodeClaims {
		name := fmt.Sprintf("claim-%d", i)
		wn := &wnode{name: name, taints: append(append([]corev1.Taint(nil), c.Taints...), c.StartupTaints...), claim: c, pool: c.NodePool}
		own := compileRequirements(c.Requirements.ToAPI())
		if len(c.InstanceTypes) == 0 {
			w.fail("%s has no instance-type options", name)
		}
		for _, it := range c.InstanceTypes {
			for _, o := range it.Offerings {
				if !o.Available {
					continue
				}
				for _, labelSet := range typeLabelSets(it) {
					lbls := map[string]string{}
					for k, v := range pools[c.NodePool].Labels {
						lbls[k] = v
					}
					for k, v := range labelSet {
						lbls[k] = v
					}
					lbls[corev1.LabelInstanceTypeStable] = it.Name
					lbls[corev1.LabelTopologyZone] = o.Zone
					if o.ZoneID != "" {
						lbls[scheduling.ZoneIDLabelKey] = o.ZoneID
					}
					lbls[v1.CapacityTypeLabelKey] = o.CapacityType
					lbls[v1.NodePoolLabelKey] = c.NodePool
					lbls[corev1.LabelHostname] = name
					for k, v := range c.Labels {
						if k != corev1.LabelHostname {
							lbls[k] = v
						}
					}
					node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls}}
					// Only resolutions the claim's own requirements allow can be launched.
					if !own(lbls) {
						continue
					}
					wn.resolutions = append(wn.resolutions, node)
					alloc := quantities(it.Capacity.List())
					subtract(alloc, quantities(it.Overhead.List()))
					for _, ds := range w.in.DaemonSetPods {
						if runsOn(ds, node, pools[c.NodePool].Taints) {
							if !slices.Contains(wn.daemons, ds) {
								wn.daemons = append(wn.daemons, ds)
							}
							subtract(alloc, resourcehelper.PodRequests(ds, resourcehelper.PodResourcesOptions{}))
							alloc[corev1.ResourcePods] = *resource.NewQuantity(alloc.Pods().Value()-1, resource.DecimalSI)
						}
					}
					wn.allocatable = append(wn.allocatable, alloc)
				}
			}
		}
		if len(wn.resolutions) == 0 {
			w.fail("%s: no instance-type option and offering meets its own requirements %s", name, c.Requirements)
		}
		w.nodes = append(w.nodes, wn)
		w.byKey[fmt.Sprintf("claim/%d", i)] = wn
	}
}

// typeLabelSets expands an instance type's requirements into the label sets a
// node of it may carry (one per combination of multi-valued keys).
func typeLabelSets(it *scheduling.InstanceType) []map[string]string {
	sets := []map[string]string{{}}
	for _, r := range it.Requirements.ToAPI() {
		if r.Operator != v1.OpIn {
			continue
		}
		var next []map[string]string
		for _, s := range sets {
			for _, v := range r.Values {
				m := map[string]string{}
				for k, x := range s {
					m[k] = x
				}
				m[r.Key] = v
				next = append(next, m)
			}
		}
		sets = next
	}
	return sets
}

// compileRequirements turns API requirements into a label predicate, using
// Kubernetes' node selector for the operators it knows.
func compileRequirements(reqs []v1.NodeSelectorRequirementWithMinValues) func(map[string]string) bool {
	var exprs []corev1.NodeSelectorRequirement
	type bound struct {
		key string
		n   int64
		gte bool
	}
	var bounds []bound
	for _, r := range reqs {
		if r.Operator == v1.OpGte || r.Operator == v1.OpLte {
			n, err := parseInt(r.Values[0])
			if err != nil {
				return func(map[string]string) bool { return false }
			}
			bounds = append(bounds, bound{r.Key, n, r.Operator == v1.OpGte})
			continue
		}
		exprs = append(exprs, corev1.NodeSelectorRequirement{Key: r.Key, Operator: corev1.NodeSelectorOperator(r.Operator), Values: r.Values})
	}
	ns, err := nodeaffinity.NewNodeSelector(&corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: exprs}}})
	if err != nil {
		return func(map[string]string) bool { return false }
	}
	return func(lbls map[string]string) bool {
		for _, b := range bounds {
			got, err := parseInt(lbls[b.key])
			if err != nil || (b.gte && got < b.n) || (!b.gte && got > b.n) {
				return false
			}
		}
		return ns.Match(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Labels: lbls}})
	}
}

func parseInt(s string) (int64, error) {
	var n int64
	_, err := fmt.Sscan(s, &n)
	return n, err
}

func runsOn(ds *corev1.Pod, node *corev1.Node, taints []corev1.Taint) bool {
	if ok, _ := nodeaffinity.GetRequiredNodeAffinity(ds).Match(node); !ok {
		return false
	}
	_, untolerated := corev1helpers.FindMatchingUntoleratedTaint(klog.Background(), taints, ds.Spec.Tolerations, repels, false)
	return !untolerated
}

func repels(t *corev1.Taint) bool {
	return t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute
}

func quantities(l corev1.ResourceList) corev1.ResourceList { return l.DeepCopy() }

func subtract(from, what corev1.ResourceList) {
	for k, q := range what {
		cur := from[k]
		cur.Sub(q)
		from[k] = cur
	}
}

// checkAccounting: every pending pod is placed once or reported unschedulable.
func (w *world) checkAccounting() {
	seen := map[*corev1.Pod]int{}
	for _, s := range w.plan.Steps {
		seen[s.Pod]++
	}
	for _, u := range w.plan.Unschedulable {
		seen[u.Pod]++
		if len(u.Reasons) == 0 {
			w.fail("pod %s is unschedulable without a reason", u.Pod.Name)
		}
	}
	for _, p := range w.in.Pods {
		if seen[p] != 1 {
			w.fail("pod %s is placed or reported %d times, want once", p.Name, seen[p])
		}
	}
	inClaims := 0
	for _, c := range w.plan.NewNodeClaims {
		inClaims += len(c.Pods)
	}
	if inClaims+len(w.plan.Existing) != len(w.plan.Steps) {
		w.fail("claims hold %d pods and existing nodes %d, but the plan has %d steps", inClaims, len(w.plan.Existing), len(w.plan.Steps))
	}
}

// replay binds pods in plan order, checking each against the world so far.
func (w *world) replay() {
	placed := map[*wnode][]*corev1.Pod{}
	for _, n := range w.nodes {
		placed[n] = append(placed[n], n.pods...)
	}
	for _, s := range w.plan.Steps {
		var wn *wnode
		if s.Claim >= 0 {
			wn = w.byKey[fmt.Sprintf("claim/%d", s.Claim)]
		} else {
			wn = w.byKey["node/"+s.Node]
		}
		if wn == nil {
			w.fail("pod %s is placed on unknown target %+v", s.Pod.Name, s)
			continue
		}
		w.checkPod(s.Pod, wn, placed)
		placed[wn] = append(placed[wn], s.Pod)
	}
	for _, n := range w.nodes {
		n.pods = placed[n]
	}
}

func (w *world) checkPod(pod *corev1.Pod, wn *wnode, placed map[*wnode][]*corev1.Pod) {
	aff := nodeaffinity.GetRequiredNodeAffinity(pod)
	for _, node := range wn.resolutions {
		if ok, err := aff.Match(node); err != nil || !ok {
			w.fail("pod %s on %s: node affinity does not match labels %v", pod.Name, wn.name, node.Labels)
			return
		}
	}
	if t, untolerated := corev1helpers.FindMatchingUntoleratedTaint(klog.Background(), withoutStartup(wn), pod.Spec.Tolerations, repels, false); untolerated {
		w.fail("pod %s on %s: taint %s is not tolerated", pod.Name, wn.name, t.ToString())
	}
	for _, p := range append(placed[wn], wn.daemons...) {
		if portsConflict(p, pod) {
			w.fail("pod %s on %s: host port also used by %s", pod.Name, wn.name, p.Name)
		}
	}
	for _, tsc := range pod.Spec.TopologySpreadConstraints {
		if tsc.WhenUnsatisfiable == corev1.DoNotSchedule {
			w.checkSpread(pod, wn, tsc, placed)
		}
	}
	if a := pod.Spec.Affinity; a != nil {
		if a.PodAffinity != nil {
			for _, term := range a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
				w.checkAffinity(pod, wn, term, placed, false)
			}
		}
		if a.PodAntiAffinity != nil {
			for _, term := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
				w.checkAffinity(pod, wn, term, placed, true)
			}
		}
	}
	// Symmetry: pods already there whose required anti-affinity selects this pod.
	for other, pods := range placed {
		for _, p := range pods {
			if p.Spec.Affinity == nil || p.Spec.Affinity.PodAntiAffinity == nil {
				continue
			}
			for _, term := range p.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
				if !termSelects(p, term, pod, w.in.NamespaceLabels) {
					continue
				}
				if same, known := w.sameDomain(wn, other, term.TopologyKey); !known {
					w.fail("pod %s on %s: the %s of %s is not decided, but %s's anti-affinity depends on it", pod.Name, wn.name, term.TopologyKey, wn.name, p.Name)
				} else if same {
					w.fail("pod %s on %s: %s there has anti-affinity on %s that selects it", pod.Name, wn.name, p.Name, term.TopologyKey)
				}
			}
		}
	}
	// A pod counted in some zone-like domain must sit on a node whose domain is known.
	w.checkCountable(pod, wn)
}

func withoutStartup(wn *wnode) []corev1.Taint {
	if wn.claim == nil {
		return wn.taints
	}
	return wn.claim.Taints
}

func portsConflict(a, b *corev1.Pod) bool {
	for _, pa := range ports(a) {
		for _, pb := range ports(b) {
			if pa.HostPort == pb.HostPort && protocol(pa) == protocol(pb) && (pa.HostIP == pb.HostIP || wildcard(pa.HostIP) || wildcard(pb.HostIP)) {
				return true
			}
		}
	}
	return false
}

func ports(p *corev1.Pod) []corev1.ContainerPort {
	var out []corev1.ContainerPort
	for _, c := range append(append([]corev1.Container(nil), p.Spec.InitContainers...), p.Spec.Containers...) {
		for _, port := range c.Ports {
			if port.HostPort > 0 {
				out = append(out, port)
			}
		}
	}
	return out
}

func protocol(p corev1.ContainerPort) corev1.Protocol {
	if p.Protocol == "" {
		return corev1.ProtocolTCP
	}
	return p.Protocol
}

func wildcard(ip string) bool { return ip == "" || ip == "0.0.0.0" || ip == "::" }

// label returns a node's value for key when all its resolutions agree.
func (wn *wnode) label(key string) (value string, present, known bool) {
	if st, ok := wn.labelCache[key]; ok {
		return st.value, st.present, st.known
	}
	value, present, known = wn.resolveLabel(key)
	if wn.labelCache == nil {
		wn.labelCache = map[string]labelState{}
	}
	wn.labelCache[key] = labelState{value, present, known}
	return value, present, known
}

func (wn *wnode) resolveLabel(key string) (value string, present, known bool) {
	for i, n := range wn.resolutions {
		v, ok := n.Labels[key]
		if i == 0 {
			value, present = v, ok
		} else if v != value || ok != present {
			return "", false, false
		}
	}
	return value, present, len(wn.resolutions) > 0
}

func (w *world) sameDomain(a, b *wnode, key string) (same, known bool) {
	if key == corev1.LabelHostname {
		return a == b, true
	}
	va, pa, ka := a.label(key)
	vb, pb, kb := b.label(key)
	if !ka || !kb {
		return false, false
	}
	return pa && pb && va == vb, true
}

func (w *world) checkSpread(pod *corev1.Pod, wn *wnode, tsc corev1.TopologySpreadConstraint, placed map[*wnode][]*corev1.Pod) {
	sel, err := metav1.LabelSelectorAsSelector(tsc.LabelSelector)
	if err != nil {
		w.fail("pod %s: bad spread selector: %v", pod.Name, err)
		return
	}
	for _, k := range tsc.MatchLabelKeys {
		if v, ok := pod.Labels[k]; ok {
			r, _ := labels.NewRequirement(k, "=", []string{v})
			sel = sel.Add(*r)
		}
	}
	domainOf := func(n *wnode) (string, bool, bool) {
		if tsc.TopologyKey == corev1.LabelHostname {
			return n.name, true, true
		}
		return n.label(tsc.TopologyKey)
	}
	d, present, known := domainOf(wn)
	if !known {
		w.fail("pod %s on %s: %s is not decided, but the pod spreads over it", pod.Name, wn.name, tsc.TopologyKey)
		return
	}
	if !present {
		w.fail("pod %s on %s: the node lacks %s, which the pod spreads over", pod.Name, wn.name, tsc.TopologyKey)
		return
	}
	honor := tsc.NodeAffinityPolicy == nil || *tsc.NodeAffinityPolicy == corev1.NodeInclusionPolicyHonor
	honorTaints := tsc.NodeTaintsPolicy != nil && *tsc.NodeTaintsPolicy == corev1.NodeInclusionPolicyHonor
	aff := nodeaffinity.GetRequiredNodeAffinity(pod)
	counts := map[string]int{}
	for _, n := range w.nodes {
		dn, p, k := domainOf(n)
		if !k || !p {
			continue
		}
		if honor {
			if ok, _ := aff.Match(n.resolutions[0]); !ok {
				continue
			}
		}
		if honorTaints {
			if _, untolerated := corev1helpers.FindMatchingUntoleratedTaint(klog.Background(), withoutStartup(n), pod.Spec.Tolerations, repels, false); untolerated {
				continue
			}
		}
		if _, ok := counts[dn]; !ok {
			counts[dn] = 0
		}
		for _, other := range placed[n] {
			if other.Namespace == pod.Namespace && sel.Matches(labels.Set(other.Labels)) {
				counts[dn]++
			}
		}
	}
	minimum := math.MaxInt
	for _, c := range counts {
		minimum = min(minimum, c)
	}
	if tsc.MinDomains != nil && len(counts) < int(*tsc.MinDomains) {
		minimum = 0
	}
	self := 0
	if sel.Matches(labels.Set(pod.Labels)) {
		self = 1
	}
	if skew := counts[d] + self - minimum; skew > int(tsc.MaxSkew) {
		w.fail("pod %s on %s: spread over %s would reach skew %d > %d (domain %s has %d, min %d)", pod.Name, wn.name, tsc.TopologyKey, skew, tsc.MaxSkew, d, counts[d], minimum)
	}
}

func termSelects(owner *corev1.Pod, term corev1.PodAffinityTerm, pod *corev1.Pod, nsLabels map[string]map[string]string) bool {
	sel, err := metav1.LabelSelectorAsSelector(term.LabelSelector)
	if err != nil || term.LabelSelector == nil {
		return false
	}
	for _, k := range term.MatchLabelKeys {
		if v, ok := owner.Labels[k]; ok {
			r, _ := labels.NewRequirement(k, "=", []string{v})
			sel = sel.Add(*r)
		}
	}
	for _, k := range term.MismatchLabelKeys {
		if v, ok := owner.Labels[k]; ok {
			r, _ := labels.NewRequirement(k, "!=", []string{v})
			sel = sel.Add(*r)
		}
	}
	if !sel.Matches(labels.Set(pod.Labels)) {
		return false
	}
	switch {
	case term.NamespaceSelector != nil:
		nsSel, err := metav1.LabelSelectorAsSelector(term.NamespaceSelector)
		if err != nil {
			return false
		}
		if nsSel.Matches(labels.Set(nsLabels[pod.Namespace])) {
			return true
		}
		for _, ns := range term.Namespaces {
			if ns == pod.Namespace {
				return true
			}
		}
		return false
	case len(term.Namespaces) > 0:
		for _, ns := range term.Namespaces {
			if ns == pod.Namespace {
				return true
			}
		}
		return false
	default:
		return pod.Namespace == owner.Namespace
	}
}

func (w *world) checkAffinity(pod *corev1.Pod, wn *wnode, term corev1.PodAffinityTerm, placed map[*wnode][]*corev1.Pod, anti bool) {
	matchingAnywhere := false
	matchingHere := false
	for n, pods := range placed {
		for _, p := range pods {
			if !termSelects(pod, term, p, w.in.NamespaceLabels) {
				continue
			}
			matchingAnywhere = true
			same, known := w.sameDomain(wn, n, term.TopologyKey)
			if !known {
				w.fail("pod %s on %s: %s is not decided, but the pod's pod affinity depends on it", pod.Name, wn.name, term.TopologyKey)
				return
			}
			if same {
				matchingHere = true
			}
		}
	}
	_, present, known := wn.label(term.TopologyKey)
	if term.TopologyKey == corev1.LabelHostname {
		present, known = true, true
	}
	switch {
	case anti && matchingHere:
		w.fail("pod %s on %s: anti-affinity on %s violated", pod.Name, wn.name, term.TopologyKey)
	case !anti && !known:
		w.fail("pod %s on %s: %s is not decided, but the pod has affinity on it", pod.Name, wn.name, term.TopologyKey)
	case !anti && !present:
		w.fail("pod %s on %s: the node lacks %s", pod.Name, wn.name, term.TopologyKey)
	case !anti && !matchingHere && (matchingAnywhere || !termSelects(pod, term, pod, w.in.NamespaceLabels)):
		w.fail("pod %s on %s: affinity on %s violated", pod.Name, wn.name, term.TopologyKey)
	}
}

// checkCountable: when a pod is selected by some zone-like spread or affinity
// term in the problem, its node's domain for that key must be decided, or the
// counts kube-scheduler will see are unknowable.
func (w *world) checkCountable(pod *corev1.Pod, wn *wnode) {
	for _, owner := range w.in.Pods {
		for _, tsc := range owner.Spec.TopologySpreadConstraints {
			if tsc.TopologyKey == corev1.LabelHostname || tsc.WhenUnsatisfiable != corev1.DoNotSchedule {
				continue
			}
			sel, err := metav1.LabelSelectorAsSelector(tsc.LabelSelector)
			if err != nil || owner.Namespace != pod.Namespace || !sel.Matches(labels.Set(pod.Labels)) {
				continue
			}
			if _, _, known := wn.label(tsc.TopologyKey); !known {
				w.fail("pod %s on %s: counted by %s's spread over %s, which is not decided on that node", pod.Name, wn.name, owner.Name, tsc.TopologyKey)
				return
			}
		}
	}
}

// checkCapacity: every resolution of every node holds its pods.
func (w *world) checkCapacity() {
	for _, n := range w.nodes {
		total := corev1.ResourceList{}
		for _, p := range n.pods {
			for k, q := range resourcehelper.PodRequests(p, resourcehelper.PodResourcesOptions{}) {
				cur := total[k]
				cur.Add(q)
				total[k] = cur
			}
		}
		total[corev1.ResourcePods] = *resource.NewQuantity(int64(len(n.pods)), resource.DecimalSI)
		for i, alloc := range n.allocatable {
			for k, need := range total {
				have, ok := alloc[k]
				if need.IsZero() {
					continue
				}
				if !ok || need.Cmp(have) > 0 {
					what := n.name
					if n.claim != nil {
						what = fmt.Sprintf("%s as %s", n.name, n.resolutions[i].Labels[corev1.LabelInstanceTypeStable])
					}
					w.fail("%s is over-committed on %s: needs %s, has %s", what, k, need.String(), have.String())
					break
				}
			}
		}
	}
}

// checkLimits: each pool's limits hold even if every claim launches its largest option.
func (w *world) checkLimits() {
	for _, p := range w.in.NodePools {
		if len(p.Limits) == 0 {
			continue
		}
		used := map[corev1.ResourceName]int64{}
		nodes := p.Nodes
		for _, c := range w.plan.NewNodeClaims {
			if c.NodePool != p.Name {
				continue
			}
			nodes++
			largest := map[corev1.ResourceName]int64{}
			for _, it := range c.InstanceTypes {
				for k, q := range it.Capacity.List() {
					largest[k] = max(largest[k], milliOr(k, q))
				}
			}
			for k, v := range largest {
				used[k] += v
			}
		}
		names := make([]string, 0, len(p.Limits))
		for k := range p.Limits {
			names = append(names, string(k))
		}
		sort.Strings(names)
		for _, name := range names {
			k := corev1.ResourceName(name)
			limit := p.Limits[k]
			if k == "nodes" {
				if nodes > limit.Value() {
					w.fail("pool %s: %d nodes exceed limit %s", p.Name, nodes, limit.String())
				}
				continue
			}
			have := milliOr(k, limit)
			if total := used[k] + milliOr(k, p.Usage.List()[k]); total > have {
				w.fail("pool %s: %s would reach %d, over its limit %s", p.Name, k, total, limit.String())
			}
		}
	}
}

func milliOr(k corev1.ResourceName, q resource.Quantity) int64 {
	if k == corev1.ResourceCPU {
		return q.MilliValue()
	}
	return q.Value()
}

// Summary renders violations for a test failure message.
func Summary(errs []string) string {
	if len(errs) > 10 {
		return strings.Join(errs[:10], "\n") + fmt.Sprintf("\n... and %d more", len(errs)-10)
	}
	return strings.Join(errs, "\n")
}
