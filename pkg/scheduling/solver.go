package scheduling

import (
	"fmt"
	"math"
	"math/bits"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/backstop-sh/backstop/apis/v1"
)

// rejected stands for a reason nobody will read: rejections of planned claims
// while a home is still being looked for.
const rejected = "rejected"

// DefaultMaxInstanceTypes caps the instance-type options of a NodeClaim.
const DefaultMaxInstanceTypes = 60

// claim is a NodeClaim being planned.
type claim struct {
	id        int
	index     int // position in the plan's NewNodeClaims
	pool      *poolState
	reqs      Requirements
	sig       string
	set       *typeSet
	cand      bitset
	requests  Resources
	pods      []*podInfo
	ports     []hostPort
	cheapest  int // type index, -1 when none
	maxUsable Resources
	reserved  Resources // capacity reserved against the pool's limits
	// slack is the room left on the cheapest option, headroom on the largest:
	// cheap filters before the full check.
	slack, headroom Resources
}

// node is existing capacity as the solve sees it.
type node struct {
	id    int
	n     *ExistingNode
	free  Resources
	ports []hostPort
}

// target is where a pod may go.
type target struct {
	node  *node
	claim *claim
}

func (t target) id() int {
	if t.node != nil {
		return t.node.id
	}
	return t.claim.id
}

// claimUpdate is what adding a pod would make of a claim.
type claimUpdate struct {
	reqs      Requirements
	sig       string
	set       *typeSet
	cand      bitset
	requests  Resources
	cheapest  int
	price     float64
	maxUsable Resources
	reserved  Resources
}

// decision is where a pod goes and how.
type decision struct {
	t      target
	fresh  bool
	update *claimUpdate
	pins   Requirements
}

type solver struct {
	in        *Input
	pools     []*poolState
	nodes     []*node
	claims    []*claim
	nextID    int
	topo      *topology
	universes map[string][]string
	// mins caches each spread constraint's minimum count during one find,
	// when no count changes.
	mins map[*constraint]int32
	// cursors skip planned claims a hostname constraint can never admit again:
	// counts only grow, so a claim that is full for a group stays full.
	cursors  map[cursorKey]int
	maxTypes int
	// reserved counts the NodeClaims this plan put in each capacity reservation.
	reserved map[string]int
	plan     *Plan
	// preferNoSchedule is set when some node or pool has a PreferNoSchedule taint.
	preferNoSchedule bool
	// eligible caches spread domains by what decides them.
	eligible map[string]map[string]bool
}

// Solve plans capacity for the pending pods: existing and in-flight capacity
// first, then new NodeClaims from NodePools by descending weight (ties by name).
func Solve(in *Input) *Plan {
	s := &solver{in: in, topo: newTopology(in.NamespaceLabels), universes: map[string][]string{}, mins: map[*constraint]int32{}, cursors: map[cursorKey]int{}, eligible: map[string]map[string]bool{}, maxTypes: in.MaxInstanceTypes, plan: &Plan{}}
	if s.maxTypes <= 0 {
		s.maxTypes = DefaultMaxInstanceTypes
	}
	pods := s.digestPods()
	s.digestPools()
	s.digestNodes()
	s.fill()
	// A pod with required pod affinity may need a pod placed after it in the
	// same batch; it is tried again once the others are placed, as long as
	// that places more pods.
	var waiting []*podInfo
	var why []Unschedulable
	for _, pi := range pods {
		if pi.err != nil {
			s.plan.Unschedulable = append(s.plan.Unschedulable, Unschedulable{Pod: pi.pod, Reasons: map[string]string{"": pi.err.Error()}})
			continue
		}
		if u, ok := s.tryPlace(pi); !ok {
			if hasRequiredAffinity(pi) {
				waiting, why = append(waiting, pi), append(why, u)
			} else {
				s.plan.Unschedulable = append(s.plan.Unschedulable, u)
			}
		}
	}
	for len(waiting) > 0 {
		var still []*podInfo
		var stillWhy []Unschedulable
		for _, pi := range waiting {
			if u, ok := s.tryPlace(pi); !ok {
				still, stillWhy = append(still, pi), append(stillWhy, u)
			}
		}
		if len(still) == len(waiting) {
			break
		}
		waiting, why = still, stillWhy
	}
	s.plan.Unschedulable = append(s.plan.Unschedulable, why...)
	s.finish()
	return s.plan
}

// open adds a fresh claim to the plan, counting it against its pool's
// limits.nodes and reservations' room.
func (s *solver) open(c *claim) {
	s.nextID++
	c.index = len(s.claims)
	s.claims = append(s.claims, c)
	if c.pool.nodesLimited {
		c.pool.remainingNodes--
	}
	if c.pool.reservedOnly {
		c.pool.reservedRoom--
	}
}

// fill opens the NodeClaims without pods that Input.Fill asks for.
func (s *solver) fill() {
	for _, ps := range s.pools {
		want := s.in.Fill[ps.Name]
		why := ""
		for opened := 0; opened < want && why == ""; opened++ {
			switch {
			case ps.unusable != "":
				why = ps.unusable
			case ps.nodesLimited && ps.remainingNodes <= 0:
				limit := ps.Limits["nodes"]
				why = fmt.Sprintf("the pool's limits.nodes (%s) is reached", limit.String())
			case ps.reservedOnly && ps.reservedRoom <= 0:
				why = reservationsFull
			default:
				c := s.freshClaim(ps)
				if c.cand.empty() {
					why = "no instance type meets the pool's requirements with an available offering"
					break
				}
				s.open(c)
			}
		}
		if why != "" {
			if s.plan.Unfilled == nil {
				s.plan.Unfilled = map[string]string{}
			}
			s.plan.Unfilled[ps.Name] = why
		}
	}
}

// tryPlace places the pod, or returns why it cannot go anywhere without
// recording it in the plan.
func (s *solver) tryPlace(pi *podInfo) (Unschedulable, bool) {
	before := len(s.plan.Unschedulable)
	s.place(pi)
	if len(s.plan.Unschedulable) == before {
		return Unschedulable{}, true
	}
	u := s.plan.Unschedulable[before]
	s.plan.Unschedulable = s.plan.Unschedulable[:before]
	return u, false
}

func hasRequiredAffinity(pi *podInfo) bool {
	for _, c := range pi.required {
		if c.kind == affinityConstraint {
			return true
		}
	}
	return false
}

func (s *solver) digestPods() []*podInfo {
	pods := make([]*podInfo, 0, len(s.in.Pods))
	for _, pod := range s.in.Pods {
		pi := &podInfo{pod: pod, requests: PodRequests(pod), tolerations: pod.Spec.Tolerations, hostPorts: podHostPorts(pod)}
		pi.terms, pi.err = nodeTerms(pod)
		if pi.err == nil {
			pi.err = s.topo.addConstraints(pi, s.in.PreferencePolicy)
		}
		if pi.err == nil && s.in.PreferencePolicy != PreferencesIgnore {
			pi.err = addNodePreferences(pi)
		}
		if pi.err != nil {
			pi.err = fmt.Errorf("pod spec cannot be scheduled: %w", pi.err)
		}
		pods = append(pods, pi)
	}
	// Existing pods' required anti-affinity binds pending pods too.
	for _, n := range s.in.Nodes {
		for _, pod := range n.Pods {
			if pod.Spec.Affinity != nil && pod.Spec.Affinity.PodAntiAffinity != nil {
				for i := range pod.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
					_, _ = s.topo.affinityTermGroup(pod, &pod.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution[i])
				}
			}
		}
	}
	for _, pi := range pods {
		if pi.err == nil {
			s.topo.memberships(pi)
			markFiltered(pi)
		}
	}
	// Pods that need a node of their own (required anti-affinity on hostname)
	// first, so they open the nodes the rest can fill; then largest first: big
	// pods open nodes, small pods fill the gaps.
	sort.SliceStable(pods, func(i, j int) bool {
		if oi, oj := ownsHostnameAntiAffinity(pods[i]), ownsHostnameAntiAffinity(pods[j]); oi != oj {
			return oi
		}
		a, b := pods[i].requests, pods[j].requests
		if a.CPU != b.CPU {
			return a.CPU > b.CPU
		}
		return a.Memory > b.Memory
	})
	return pods
}

// markFiltered flags spread constraints whose counts depend on which nodes match
// the pod's required node affinity beyond the topology key itself.
func markFiltered(pi *podInfo) {
	for _, c := range pi.required {
		if c.kind != spreadConstraint || c.g.hostname() {
			continue
		}
		if c.honorTaints {
			c.filtered = true
		}
		if !c.honorAffinity {
			continue
		}
		for _, t := range pi.terms {
			for k := range t {
				if k != c.g.key {
					c.filtered = true
				}
			}
		}
	}
}

func ownsHostnameAntiAffinity(pi *podInfo) bool {
	for _, g := range pi.owns {
		if g.hostname() {
			return true
		}
	}
	return false
}

func addNodePreferences(pi *podInfo) error {
	aff := pi.pod.Spec.Affinity
	if aff == nil || aff.NodeAffinity == nil {
		return nil
	}
	for _, term := range aff.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
		reqs, err := FromNodeSelector(term.Preference.MatchExpressions)
		if err != nil {
			return fmt.Errorf("preferred node affinity: %w", err)
		}
		pi.prefs = append(pi.prefs, &preference{weight: term.Weight, nodeReqs: reqs})
	}
	return nil
}

func (s *solver) digestPools() {
	var daemons []*podInfo
	for _, pod := range s.in.DaemonSetPods {
		pi := &podInfo{pod: pod, requests: PodRequests(pod), tolerations: pod.Spec.Tolerations, hostPorts: podHostPorts(pod)}
		pi.terms, pi.err = nodeTerms(pod)
		daemons = append(daemons, pi)
	}
	zoneIndex := &offeringIndex{bits: map[string]int{}}
	capacityTypeIndex := &offeringIndex{bits: map[string]int{}}
	pools := append([]*NodePool(nil), s.in.NodePools...)
	sort.SliceStable(pools, func(i, j int) bool {
		if pools[i].Weight != pools[j].Weight {
			return pools[i].Weight > pools[j].Weight
		}
		return pools[i].Name < pools[j].Name
	})
	for _, p := range pools {
		ps := newPoolState(p, daemons, zoneIndex, capacityTypeIndex)
		ps.initReserved(s.in.ReservedInFlight)
		s.pools = append(s.pools, ps)
		s.plan.PoolOrder = append(s.plan.PoolOrder, p.Name)
		s.preferNoSchedule = s.preferNoSchedule || hasPreferNoSchedule(p.Taints)
	}
}

func (s *solver) digestNodes() {
	for _, n := range s.in.Nodes {
		s.preferNoSchedule = s.preferNoSchedule || hasPreferNoSchedule(n.Taints)
		nd := &node{id: s.nextID, n: n, free: n.Allocatable}
		s.nextID++
		for _, pod := range n.Pods {
			nd.free = nd.free.Sub(PodRequests(pod))
			nd.ports = append(nd.ports, podHostPorts(pod)...)
			owned := ownedAntiAffinity(s.topo, pod)
			for _, g := range s.topo.matching(pod) {
				s.record(g, target{node: nd}, true, false)
			}
			for _, g := range owned {
				s.record(g, target{node: nd}, false, true)
			}
		}
		s.nodes = append(s.nodes, nd)
	}
}

func hasPreferNoSchedule(taints []corev1.Taint) bool {
	for _, t := range taints {
		if t.Effect == corev1.TaintEffectPreferNoSchedule {
			return true
		}
	}
	return false
}

func ownedAntiAffinity(t *topology, pod *corev1.Pod) []*group {
	if pod.Spec.Affinity == nil || pod.Spec.Affinity.PodAntiAffinity == nil {
		return nil
	}
	var out []*group
	for i := range pod.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
		if g, err := t.affinityTermGroup(pod, &pod.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution[i]); err == nil {
			out = append(out, g)
		}
	}
	return out
}

func (s *solver) record(g *group, t target, member, owner bool) {
	d, decided, present := s.domainOf(t, g.key)
	if decided && present {
		g.record(d, member, owner)
	}
}

// place finds the pod a home, honouring as many preferences as it can: all of
// them if possible, else the heaviest first, each kept only if the pod still fits.
func (s *solver) place(pi *podInfo) {
	if len(pi.prefs) == 0 {
		s.placeWith(pi, nil)
		return
	}
	if d, _ := s.find(pi, pi.prefs); d != nil {
		s.commit(pi, d)
		return
	}
	var kept []*preference
	for _, p := range byWeight(pi.prefs) {
		trial := append(append([]*preference(nil), kept...), p)
		if d, _ := s.find(pi, trial); d != nil {
			kept = trial
		}
	}
	s.placeWith(pi, kept)
}

func (s *solver) placeWith(pi *podInfo, prefs []*preference) {
	d, reasons := s.find(pi, prefs)
	if d == nil {
		s.plan.Unschedulable = append(s.plan.Unschedulable, Unschedulable{Pod: pi.pod, Reasons: reasons})
		return
	}
	s.commit(pi, d)
}

// find looks for a home without changing anything: existing capacity, then a
// planned claim with room to spare, then any planned claim that can grow, then
// a new claim from each pool in turn.
func (s *solver) find(pi *podInfo, prefs []*preference) (*decision, map[string]string) {
	clear(s.mins)
	// Each term pairs the requirements a node must meet (one alternative of
	// required node affinity plus the preferences tried) with all the required
	// alternatives, which decide the domains a spread constraint counts.
	terms := make([]nodeTerm, len(pi.terms))
	for i, t := range pi.terms {
		terms[i] = nodeTerm{reqs: t, required: pi.terms}
	}
	cons := pi.required
	for _, p := range prefs {
		if p.nodeReqs != nil {
			next := make([]nodeTerm, 0, len(terms))
			for _, t := range terms {
				merged := t.reqs.Intersect(p.nodeReqs)
				if !anyEmpty(merged) {
					next = append(next, nodeTerm{reqs: merged, required: pi.terms})
				}
			}
			terms = next
		}
		if p.constraint != nil {
			cons = append(append([]*constraint(nil), cons...), p.constraint)
		}
	}
	if len(terms) == 0 {
		return nil, map[string]string{"": "its preferred node affinity conflicts with its required node affinity"}
	}
	// Within each tier, targets whose PreferNoSchedule taints the pod does not
	// tolerate come last (a second pass), as kube-scheduler's scoring ranks them.
	passes := []bool{false}
	if s.preferNoSchedule {
		passes = []bool{true, false}
	}
	skip := func(avoid bool, taints []corev1.Taint) bool {
		return s.preferNoSchedule && avoid == repels(pi.tolerations, taints)
	}
	for _, avoid := range passes {
		for _, n := range s.nodes {
			if !pi.requests.Fits(n.free) || skip(avoid, n.n.Taints) {
				continue
			}
			for _, term := range terms {
				if s.nodeAccepts(n, pi, term, cons) == "" {
					return &decision{t: target{node: n}}, nil
				}
			}
		}
	}
	// Planned claims: first one where the pod fits at no extra cost (its
	// cheapest option still fits), else the first that can grow to take it.
	start, cursorKeys := s.firstOpenClaim(cons, pi)
	defer s.advanceCursors(cursorKeys)
	for _, avoid := range passes {
		for _, c := range s.claims[start:] {
			if !pi.requests.Fits(c.slack) || skip(avoid, c.pool.Taints) {
				continue
			}
			for _, term := range terms {
				if u, pins, reason := s.claimAccepts(c, pi, term, cons, false); reason == "" && u.price <= c.set.price[c.cheapest] {
					return &decision{t: target{claim: c}, update: u, pins: pins}, nil
				}
			}
		}
	}
	for _, avoid := range passes {
		for _, c := range s.claims[start:] {
			if !pi.requests.Fits(c.headroom) || skip(avoid, c.pool.Taints) {
				continue
			}
			for _, term := range terms {
				if u, pins, reason := s.claimAccepts(c, pi, term, cons, false); reason == "" {
					return &decision{t: target{claim: c}, update: u, pins: pins}, nil
				}
			}
		}
	}
	reasons := map[string]string{}
	for _, ps := range s.poolOrder(pi) {
		if ps.unusable != "" {
			reasons[ps.Name] = ps.unusable
			continue
		}
		if ps.nodesLimited && ps.remainingNodes <= 0 {
			reasons[ps.Name] = fmt.Sprintf("limit nodes=%d reached", ps.Limits.Name("nodes", "").Value())
			continue
		}
		if ps.reservedOnly && ps.reservedRoom <= 0 {
			reasons[ps.Name] = reservationsFull
			continue
		}
		if ok, taint := tolerates(pi.tolerations, ps.Taints); !ok {
			reasons[ps.Name] = "does not tolerate taint " + taintString(taint)
			continue
		}
		c := s.freshClaim(ps)
		var why []string
		for _, term := range terms {
			u, pins, reason := s.claimAccepts(c, pi, term, cons, true)
			if reason == "" {
				return &decision{t: target{claim: c}, fresh: true, update: u, pins: pins}, nil
			}
			why = append(why, reason)
		}
		reasons[ps.Name] = strings.Join(dedupe(why), "; or ")
	}
	if len(s.pools) == 0 {
		reasons[""] = "no NodePool exists and no existing node fits"
	}
	return nil, reasons
}

// poolOrder is the order pools are tried for a pod: by weight, and among
// pools of equal weight those whose PreferNoSchedule taints the pod does not
// tolerate last.
func (s *solver) poolOrder(pi *podInfo) []*poolState {
	if !s.preferNoSchedule {
		return s.pools
	}
	out := append([]*poolState(nil), s.pools...)
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Weight != out[j].Weight {
			return out[i].Weight > out[j].Weight
		}
		return !repels(pi.tolerations, out[i].Taints) && repels(pi.tolerations, out[j].Taints)
	})
	return out
}

// repels reports whether a PreferNoSchedule taint is not tolerated.
func repels(tolerations []corev1.Toleration, taints []corev1.Taint) bool {
	for i := range taints {
		if taints[i].Effect != corev1.TaintEffectPreferNoSchedule {
			continue
		}
		tolerated := false
		for j := range tolerations {
			if toleratesTaint(&tolerations[j], &taints[i]) {
				tolerated = true
				break
			}
		}
		if !tolerated {
			return true
		}
	}
	return false
}

// cursorKey names a hostname group and the count at which it refuses a pod:
// owners for the symmetric side of anti-affinity, members otherwise.
type cursorKey struct {
	g         *group
	threshold int32
	owners    bool
}

func (k cursorKey) blocks(c *claim) bool {
	d := domain{target: c.id}
	if k.owners {
		return k.g.owners(d) >= k.threshold
	}
	return k.g.count(d) >= k.threshold
}

// firstOpenClaim returns the first planned claim the pod's hostname constraints
// might admit, and the cursors it used.
func (s *solver) firstOpenClaim(cons []*constraint, pi *podInfo) (int, []cursorKey) {
	var keys []cursorKey
	for _, c := range cons {
		if !c.g.hostname() {
			continue
		}
		switch c.kind {
		case antiAffinityConstraint:
			keys = append(keys, cursorKey{g: c.g, threshold: 1})
		case spreadConstraint:
			self := int32(0)
			if c.selfMatch {
				self = 1
			}
			keys = append(keys, cursorKey{g: c.g, threshold: c.maxSkew - self + 1})
		}
	}
	for _, g := range pi.memberOf {
		if g.hostname() && g.ownersTotal > 0 {
			keys = append(keys, cursorKey{g: g, threshold: 1, owners: true})
		}
	}
	start := 0
	for _, k := range keys {
		start = max(start, s.cursors[k])
	}
	return start, keys
}

func (s *solver) advanceCursors(keys []cursorKey) {
	for _, k := range keys {
		i := s.cursors[k]
		for i < len(s.claims) && k.blocks(s.claims[i]) {
			i++
		}
		s.cursors[k] = i
	}
}

// nodeTerm is one alternative of a pod's node requirements.
type nodeTerm struct {
	reqs     Requirements
	required []Requirements
}

func anyEmpty(rs Requirements) bool {
	for _, r := range rs {
		if r.IsEmpty() {
			return true
		}
	}
	return false
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func (s *solver) freshClaim(ps *poolState) *claim {
	sig := ps.reqs.String()
	set := ps.typesFor(ps.reqs, sig)
	c := &claim{id: s.nextID, pool: ps, reqs: ps.reqs, sig: sig, set: set, cand: set.compat.clone(), cheapest: -1}
	for _, i := range set.order {
		if ps.limited && !ps.withinLimits(ps.types[i].Capacity, Resources{}) {
			continue
		}
		c.maxUsable.growTo(ps.usable[i])
	}
	return c
}

// nodeAccepts returns "" when the pod can go on the existing node, else why not.
func (s *solver) nodeAccepts(n *node, pi *podInfo, term nodeTerm, cons []*constraint) string {
	if ok, taint := tolerates(pi.tolerations, n.n.Taints); !ok {
		return "does not tolerate taint " + taintString(taint)
	}
	if !term.reqs.MatchesLabels(n.n.Labels) {
		return "node affinity does not match"
	}
	if portConflict(n.ports, pi.hostPorts) {
		return "host port in use"
	}
	if _, reason := s.topologyPins(pi, target{node: n}, cons, term, false); reason != "" {
		return reason
	}
	return ""
}

func portConflict(used, wanted []hostPort) bool {
	for _, w := range wanted {
		for _, u := range used {
			if w.conflicts(u) {
				return true
			}
		}
	}
	return false
}

// claimAccepts works out what adding the pod to c would make of it, or why it cannot.
func (s *solver) claimAccepts(c *claim, pi *podInfo, nt nodeTerm, cons []*constraint, explain bool) (*claimUpdate, Requirements, string) {
	term := nt.reqs
	ps := c.pool
	if ok, taint := tolerates(pi.tolerations, ps.Taints); !ok {
		return nil, nil, "does not tolerate taint " + taintString(taint)
	}
	for k, r := range term {
		if cr, ok := c.reqs[k]; ok {
			if !cr.Intersects(r) {
				if !explain {
					return nil, nil, rejected
				}
				return nil, nil, fmt.Sprintf("requires %s %s, but the pool allows %s", k, describe(r), describe(cr))
			}
		} else if !ps.typeKeys[k] && !r.AllowsAbsent() && k != ZoneIDLabelKey {
			// (A zone id follows the zone: the offerings decide it.)
			if !explain {
				return nil, nil, rejected
			}
			return nil, nil, fmt.Sprintf("requires label %s, which the pool's nodes do not have", k)
		}
	}
	if portConflict(c.ports, pi.hostPorts) {
		return nil, nil, "host port in use"
	}
	pins, reason := s.topologyPins(pi, target{claim: c}, cons, nt, explain)
	if reason != "" {
		return nil, nil, reason
	}
	u := &claimUpdate{reqs: c.reqs, sig: c.sig, set: c.set, requests: c.requests.Add(pi.requests)}
	if len(term) > 0 || len(pins) > 0 {
		u.reqs = c.reqs.Clone()
		u.reqs.Merge(term)
		u.reqs.Merge(pins)
		for k := range term {
			if u.reqs[k].IsEmpty() {
				return nil, nil, fmt.Sprintf("requires %s %s, which conflicts with pods already planned there", k, describe(term[k]))
			}
		}
		u.sig = u.reqs.String()
		if u.sig != c.sig {
			u.set = ps.typesFor(u.reqs, u.sig)
		}
	}
	if !u.requests.Fits(c.maxUsable) {
		if !explain {
			return nil, nil, rejected
		}
		return nil, nil, "no instance type has enough resources: " + u.requests.Exceeding(c.maxUsable)
	}
	cand := c.cand
	if u.set != c.set {
		cand = cand.and(u.set.compat)
		if cand.empty() {
			return nil, nil, "no instance type meets the combined requirements " + u.reqs.String()
		}
	}
	u.cand = newBitset(len(ps.types))
	u.cheapest = -1
	portsTaken := false
	for _, i32 := range u.set.order {
		i := int(i32)
		if !cand.has(i) || !u.requests.Fits(ps.usable[i]) {
			continue
		}
		if len(pi.hostPorts) > 0 && portConflict(ps.daemonPorts[i], pi.hostPorts) {
			// A DaemonSet pod would hold the port on every such node.
			portsTaken = true
			continue
		}
		if ps.limited && !ps.withinLimits(ps.types[i].Capacity, c.reserved) {
			continue
		}
		u.cand.set(i)
		if u.cheapest < 0 {
			u.cheapest, u.price = i, u.set.price[i]
		}
		u.maxUsable.growTo(ps.usable[i])
		if ps.limited {
			u.reserved.growTo(ps.types[i].Capacity)
		}
	}
	if u.cheapest < 0 {
		if !explain {
			return nil, nil, rejected
		}
		if portsTaken {
			return nil, nil, "a DaemonSet pod takes the pod's host port on every node the pool can make"
		}
		if ps.limited {
			return nil, nil, s.limitReason(ps, u.requests)
		}
		return nil, nil, "no instance type has enough resources: needs " + u.requests.String()
	}
	if reason := minValuesUnmet(ps, u.reqs, u.cand); reason != "" {
		return nil, nil, reason
	}
	return u, pins, ""
}

func (s *solver) limitReason(ps *poolState, need Resources) string {
	for _, name := range ps.limitNames {
		if need.Get(name) > 0 || ps.remaining[name] <= 0 {
			q := ps.Limits[name]
			return fmt.Sprintf("limit %s=%s reached", name, q.String())
		}
	}
	return "no instance type fits within the pool's limits"
}

// minValuesUnmet checks that the options span at least minValues values of each key that asks for it.
func minValuesUnmet(ps *poolState, reqs Requirements, cand bitset) string {
	if !reqs.HasMinValues() {
		return ""
	}
	var chosen []int
	for i := range ps.types {
		if cand.has(i) {
			chosen = append(chosen, i)
		}
	}
	return spanUnmet(ps, reqs, chosen)
}

// spanUnmet checks the minValues of reqs over the chosen types.
func spanUnmet(ps *poolState, reqs Requirements, chosen []int) string {
	for k, r := range reqs {
		if r.MinValues == nil {
			continue
		}
		seen := map[string]bool{}
		for _, i := range chosen {
			for _, v := range typeValues(ps.types[i], k, r, reqs) {
				seen[v] = true
			}
		}
		if len(seen) < *r.MinValues {
			return fmt.Sprintf("minValues %d of %s not met: only %d values fit", *r.MinValues, k, len(seen))
		}
	}
	return ""
}

// typeValues lists the values of key k, allowed by r, that a node of type it can have.
func typeValues(it *InstanceType, k string, r *Requirement, reqs Requirements) []string {
	var out []string
	switch k {
	case zoneKey, capacityTypeKey, ZoneIDLabelKey:
		// Offerings' attributes, not the type's labels.
		for _, o := range it.Offerings {
			if !o.Available || !offeringAllowed(reqs, o) {
				continue
			}
			switch k {
			case zoneKey:
				out = append(out, o.Zone)
			case capacityTypeKey:
				out = append(out, o.CapacityType)
			case ZoneIDLabelKey:
				if o.ZoneID != "" {
					out = append(out, o.ZoneID)
				}
			}
		}
	default:
		if tr, ok := it.Requirements[k]; ok {
			for _, v := range tr.Values() {
				if r.Has(v) {
					out = append(out, v)
				}
			}
		}
	}
	return out
}

// chooseTypes picks at most max of a claim's candidate types, cheapest first,
// such that they still span every minValues the requirements ask for: the
// cheapest type bringing a value still missing goes in first, the rest of the
// room is filled cheapest first.
func chooseTypes(ps *poolState, reqs Requirements, cand bitset, order []int32, max int) ([]int, string) {
	var all []int
	for _, i := range order {
		if cand.has(int(i)) {
			all = append(all, int(i))
			if len(all) == max && !reqs.HasMinValues() {
				break
			}
		}
	}
	if len(all) <= max {
		return all, ""
	}
	if spanUnmet(ps, reqs, all[:max]) == "" {
		return all[:max], ""
	}
	picked := map[int]bool{}
	seen := map[string]map[string]bool{}
	for _, i := range all {
		if len(picked) == max {
			break
		}
		for k, r := range reqs {
			if r.MinValues == nil || len(seen[k]) >= *r.MinValues {
				continue
			}
			for _, v := range typeValues(ps.types[i], k, r, reqs) {
				if !seen[k][v] {
					picked[i] = true
				}
			}
		}
		if picked[i] {
			for k, r := range reqs {
				if r.MinValues != nil {
					if seen[k] == nil {
						seen[k] = map[string]bool{}
					}
					for _, v := range typeValues(ps.types[i], k, r, reqs) {
						seen[k][v] = true
					}
				}
			}
		}
	}
	for _, i := range all {
		if len(picked) == max {
			break
		}
		picked[i] = true
	}
	var out []int
	for _, i := range all {
		if picked[i] {
			out = append(out, i)
		}
	}
	return out, spanUnmet(ps, reqs, out)
}

// commit places the pod.
func (s *solver) commit(pi *podInfo, d *decision) {
	t := d.t
	if n := t.node; n != nil {
		n.free = n.free.Sub(pi.requests)
		n.ports = append(n.ports, pi.hostPorts...)
		s.plan.Existing = append(s.plan.Existing, Placement{Pod: pi.pod, Node: n.n.Name})
		s.plan.Steps = append(s.plan.Steps, Step{Pod: pi.pod, Node: n.n.Name, Claim: -1})
	} else {
		c := t.claim
		if d.fresh {
			s.open(c)
		}
		u := d.update
		if c.pool.limited {
			for _, name := range c.pool.limitNames {
				c.pool.remaining[name] += c.reserved.Get(name) - u.reserved.Get(name)
			}
		}
		c.reqs, c.sig, c.set, c.cand, c.requests = u.reqs, u.sig, u.set, u.cand, u.requests
		c.cheapest, c.maxUsable, c.reserved = u.cheapest, u.maxUsable, u.reserved
		c.slack, c.headroom = c.pool.usable[c.cheapest].Sub(c.requests), c.maxUsable.Sub(c.requests)
		c.pods = append(c.pods, pi)
		c.ports = append(c.ports, pi.hostPorts...)
		s.plan.Steps = append(s.plan.Steps, Step{Pod: pi.pod, Claim: c.index})
	}
	for _, g := range pi.memberOf {
		s.record(g, t, true, false)
	}
	for _, g := range pi.owns {
		s.record(g, t, false, true)
	}
}

// finish turns planned claims into NodeClaims.
func (s *solver) finish() {
	dropped := map[int]bool{}
	defer s.renumber(dropped)
	for _, c := range s.claims {
		ps := c.pool
		nc := &NewNodeClaim{NodePool: ps.Name, Taints: ps.Taints, StartupTaints: ps.StartupTaints}
		chosen, unmet := chooseTypes(ps, c.reqs, c.cand, c.set.order, s.maxTypes)
		if unmet != "" {
			// No choice of options within the cap spans minValues: the claim
			// would leave with less variety than the pool demands.
			for _, pi := range c.pods {
				s.plan.Unschedulable = append(s.plan.Unschedulable, Unschedulable{Pod: pi.pod, Reasons: map[string]string{ps.Name: unmet + fmt.Sprintf(" within %d instance types", s.maxTypes)}})
			}
			dropped[c.index] = true
			continue
		}
		for _, i := range chosen {
			nc.InstanceTypes = append(nc.InstanceTypes, ps.types[i])
		}
		names := make([]string, len(nc.InstanceTypes))
		zones, capacityTypes := map[string]bool{}, map[string]bool{}
		for i, it := range nc.InstanceTypes {
			names[i] = it.Name
			for _, o := range it.Offerings {
				if o.Available && offeringAllowed(c.reqs, o) {
					zones[o.Zone], capacityTypes[o.CapacityType] = true, true
				}
			}
		}
		reqs := c.reqs.Clone()
		if capacityTypes[v1.CapacityTypeReserved] {
			if it, o, ok := s.reserve(nc.InstanceTypes, c.reqs); ok {
				// Into the reservation: its type, its zone, its id, so
				// the launch takes the room this plan counted.
				nc.InstanceTypes, names = []*InstanceType{it}, []string{it.Name}
				zones, capacityTypes = map[string]bool{o.Zone: true}, map[string]bool{v1.CapacityTypeReserved: true}
				reqs.Add(MustRequirement(ReservationIDLabelKey, v1.OpIn, o.ReservationID))
			} else {
				delete(capacityTypes, v1.CapacityTypeReserved)
				if len(capacityTypes) == 0 {
					for _, pi := range c.pods {
						s.plan.Unschedulable = append(s.plan.Unschedulable, Unschedulable{Pod: pi.pod, Reasons: map[string]string{ps.Name: reservationsFull}})
					}
					dropped[c.index] = true
					continue
				}
			}
		}
		reqs.Add(MustRequirement(corev1.LabelInstanceTypeStable, v1.OpIn, names...))
		reqs.Add(MustRequirement(zoneKey, v1.OpIn, keys(zones)...))
		reqs.Add(MustRequirement(capacityTypeKey, v1.OpIn, keys(capacityTypes)...))
		nc.Requirements = reqs
		nc.Requests = c.requests.Add(ps.daemons[chosen[0]])
		nc.Labels = reqs.Labels()
		for _, pi := range c.pods {
			nc.Pods = append(nc.Pods, pi.pod)
		}
		s.plan.NewNodeClaims = append(s.plan.NewNodeClaims, nc)
	}
}

// reservationsFull is why a pool that launches only into capacity
// reservations takes no more pods.
const reservationsFull = "every capacity reservation the pool allows is full"

// reserve takes room for one NodeClaim in the cheapest capacity
// reservation its instance types can launch into, counting down what the
// reservations' offerings say they hold, so one plan never puts more
// NodeClaims in a reservation than it takes. Claims with minValues are not
// put in reservations: one type could not span them.
func (s *solver) reserve(types []*InstanceType, reqs Requirements) (*InstanceType, Offering, bool) {
	if reqs.HasMinValues() {
		return nil, Offering{}, false
	}
	if s.reserved == nil {
		s.reserved = map[string]int{}
		for id, n := range s.in.ReservedInFlight {
			s.reserved[id] = n
		}
	}
	var best *InstanceType
	var bestOffer Offering
	for _, it := range types {
		for _, o := range it.Offerings {
			if o.CapacityType != v1.CapacityTypeReserved || o.ReservationID == "" || !o.Available || !offeringAllowed(reqs, o) {
				continue
			}
			if o.ReservationCapacity-s.reserved[o.ReservationID] <= 0 {
				continue
			}
			if best == nil || o.Price < bestOffer.Price || (o.Price == bestOffer.Price && o.ReservationID < bestOffer.ReservationID) {
				best, bestOffer = it, o
			}
		}
	}
	if best == nil {
		return nil, Offering{}, false
	}
	s.reserved[bestOffer.ReservationID]++
	return best, bestOffer, true
}

// renumber removes the steps of dropped claims and points the others at
// their claim's place among the NewNodeClaims that remain.
func (s *solver) renumber(dropped map[int]bool) {
	if len(dropped) == 0 {
		return
	}
	index := make([]int, len(s.claims))
	next := 0
	for i := range s.claims {
		index[i] = next
		if !dropped[i] {
			next++
		}
	}
	steps := s.plan.Steps[:0]
	for _, st := range s.plan.Steps {
		if st.Node == "" {
			if dropped[st.Claim] {
				continue
			}
			st.Claim = index[st.Claim]
		}
		steps = append(steps, st)
	}
	s.plan.Steps = steps
}

// universe is every value a topology key can take: on existing nodes and on
// the nodes any pool can make.
func (s *solver) universe(key string) []string {
	if u, ok := s.universes[key]; ok {
		return u
	}
	seen := map[string]bool{}
	for _, n := range s.nodes {
		if v, ok := n.n.Labels[key]; ok {
			seen[v] = true
		}
	}
	for _, ps := range s.pools {
		ps.addValues(key, seen)
	}
	u := keys(seen)
	s.universes[key] = u
	return u
}

// addValues adds every value key can take on the pool's nodes.
func (ps *poolState) addValues(key string, seen map[string]bool) {
	if ps.unusable != "" {
		return
	}
	if key == ZoneIDLabelKey {
		// A node's zone id follows its zone.
		for _, id := range ps.zoneIDs(nil) {
			seen[id] = true
		}
		return
	}
	if r, ok := ps.reqs[key]; ok && r.Finite() {
		for _, v := range r.Values() {
			seen[v] = true
		}
		return
	}
	for _, it := range ps.types {
		if r, ok := it.Requirements[key]; ok {
			for _, v := range r.Values() {
				seen[v] = true
			}
		}
	}
}

// addValuesFor adds the values key can take on the pool's nodes that also
// meet a node-affinity term: nothing when no instance type of the pool can.
func (ps *poolState) addValuesFor(key string, term Requirements, seen map[string]bool) {
	if ps.unusable != "" {
		return
	}
	fixed, poolFixed := ps.reqs[key]
	poolFixed = poolFixed && fixed.Finite()
	for _, it := range ps.types {
		if !ps.termAllows(term, it) {
			continue
		}
		if key == ZoneIDLabelKey {
			for _, id := range ps.zoneIDs(term[key]) {
				if zr, ok := term[zoneKey]; !ok || zr.Has(ps.zoneIndex.zoneOf(id)) {
					seen[id] = true
				}
			}
			return
		}
		if poolFixed {
			for _, v := range fixed.Values() {
				seen[v] = true
			}
			return
		}
		if r, ok := it.Requirements[key]; ok {
			for _, v := range r.Values() {
				seen[v] = true
			}
		}
	}
}

// domainOf says where target t sits for key: decided, and whether the node
// will carry the label at all.
func (s *solver) domainOf(t target, key string) (domain, bool, bool) {
	if n := t.node; n != nil {
		v, ok := n.n.Labels[key]
		return domain{target: n.id, value: v}, true, ok
	}
	c := t.claim
	if key == hostnameKey {
		return domain{target: c.id}, true, true
	}
	if key == ZoneIDLabelKey {
		// Decided once the claim's zone is.
		if zones := s.possibleValues(c, zoneKey); len(zones) == 1 {
			id := c.pool.zoneIndex.idOf(zones[0])
			return domain{target: c.id, value: id}, true, id != ""
		}
		return domain{}, false, false
	}
	r, ok := c.reqs[key]
	if !ok {
		if c.pool.typeKeys[key] {
			return domain{}, false, false
		}
		return domain{}, true, false
	}
	if r.Finite() && !r.AllowsAbsent() && len(r.values) == 1 {
		return domain{target: c.id, value: r.values[0]}, true, true
	}
	if r.Finite() && len(r.values) == 0 {
		return domain{}, true, false
	}
	return domain{}, false, false
}

// possibleValues lists the values key may still take on claim c.
func (s *solver) possibleValues(c *claim, key string) []string {
	if key == ZoneIDLabelKey {
		var ids []string
		for _, z := range s.possibleValues(c, zoneKey) {
			id := c.pool.zoneIndex.idOf(z)
			if r, ok := c.reqs[key]; id != "" && (!ok || r.Has(id)) {
				ids = append(ids, id)
			}
		}
		return ids
	}
	if key == zoneKey || key == capacityTypeKey {
		masks, index := c.set.zones, c.pool.zoneIndex
		if key == capacityTypeKey {
			masks, index = c.set.capacityTypes, c.pool.capacityTypeIndex
		}
		var mask uint64
		for w, word := range c.cand {
			for word != 0 {
				i := w*64 + bits.TrailingZeros64(word)
				word &= word - 1
				mask |= masks[i]
			}
		}
		return index.values(mask)
	}
	seen := map[string]bool{}
	r, constrained := c.reqs[key]
	for i, it := range c.pool.types {
		if !c.cand.has(i) {
			continue
		}
		if tr, ok := it.Requirements[key]; ok {
			for _, v := range tr.Values() {
				if !constrained || r.Has(v) {
					seen[v] = true
				}
			}
		} else if constrained && r.Finite() {
			for _, v := range r.Values() {
				seen[v] = true
			}
		}
	}
	return keys(seen)
}

// topologyPins checks the pod's topology constraints on target t. Where t's
// domain for a key is still open (a claim whose zone is not chosen), it picks
// one and returns it as a requirement to add.
func (s *solver) topologyPins(pi *podInfo, t target, cons []*constraint, nt nodeTerm, explain bool) (Requirements, string) {
	term := nt.reqs
	var pending map[string][]*constraint
	var counted map[string][]*group
	check := func(c *constraint) string {
		d, decided, present := s.domainOf(t, c.g.key)
		if !decided {
			if pending == nil {
				pending = map[string][]*constraint{}
			}
			pending[c.g.key] = append(pending[c.g.key], c)
			return ""
		}
		if !s.allowed(c, d, present, nt) {
			if !explain {
				return rejected
			}
			return fmt.Sprintf("%s on %s not satisfied", c.kind, c.g.key)
		}
		return ""
	}
	for _, c := range cons {
		if r := check(c); r != "" {
			return nil, r
		}
	}
	for _, g := range pi.memberOf {
		if g.ownersTotal > 0 {
			if r := check(&constraint{kind: symmetricAntiAffinity, g: g}); r != "" {
				return nil, "pod anti-affinity of pods already there on " + g.key + " forbids it"
			}
		}
		if !g.hostname() {
			if _, decided, _ := s.domainOf(t, g.key); !decided {
				if counted == nil {
					counted = map[string][]*group{}
				}
				counted[g.key] = append(counted[g.key], g)
			}
		}
	}
	if pending == nil && counted == nil {
		return nil, ""
	}
	c := t.claim
	pins := Requirements{}
	for _, key := range unionKeys(pending, counted) {
		values := s.possibleValues(c, key)
		best, bestScore := "", int32(math.MaxInt32)
		for _, v := range values {
			if tr, ok := term[key]; ok && !tr.Has(v) {
				continue
			}
			d := domain{target: c.id, value: v}
			ok := true
			var score int32
			for _, con := range pending[key] {
				if !s.allowed(con, d, true, nt) {
					ok = false
					break
				}
				score += con.g.count(d)
			}
			if !ok {
				continue
			}
			for _, g := range counted[key] {
				score += g.count(d)
			}
			if score < bestScore {
				best, bestScore = v, score
			}
		}
		if best == "" {
			if !explain {
				return nil, rejected
			}
			return nil, fmt.Sprintf("no %s can satisfy the pod's topology constraints", key)
		}
		pins.Add(MustRequirement(key, v1.OpIn, best))
	}
	return pins, ""
}

func unionKeys(a map[string][]*constraint, b map[string][]*group) []string {
	seen := map[string]bool{}
	for k := range a {
		seen[k] = true
	}
	for k := range b {
		seen[k] = true
	}
	return keys(seen)
}

// allowed reports whether one constraint admits domain d.
func (s *solver) allowed(c *constraint, d domain, present bool, nt nodeTerm) bool {
	switch c.kind {
	case spreadConstraint:
		if !present {
			return false
		}
		if r, ok := nt.reqs[c.g.key]; ok && !c.g.hostname() && !r.Has(d.value) {
			return false
		}
		self := int32(0)
		if c.selfMatch {
			self = 1
		}
		// Counting every member in d over-counts and a lower bound of the
		// minimum under-counts, so a filtered constraint errs on the strict side.
		return c.g.count(d)+self-s.minCount(c, nt.required) <= c.maxSkew
	case affinityConstraint:
		if !present {
			return false
		}
		return c.g.count(d) > 0 || (c.g.total == 0 && c.selfMatch)
	case antiAffinityConstraint:
		return !present || c.g.count(d) == 0
	default:
		// Another pod's required anti-affinity selects this one: stay out of its domain.
		return !present || c.g.owners(d) == 0
	}
}

// minCount is the least number of matching pods in any eligible domain; new
// nodes can always be made, so it is 0 for hostname.
func (s *solver) minCount(c *constraint, required []Requirements) int32 {
	if c.g.hostname() {
		return 0
	}
	if m, ok := s.mins[c]; ok {
		return m
	}
	m := s.computeMinCount(c, required)
	s.mins[c] = m
	return m
}

func (s *solver) computeMinCount(c *constraint, required []Requirements) int32 {
	eligible := s.eligibleDomains(c, required)
	if len(eligible) == 0 || int32(len(eligible)) < c.minDomains {
		return 0
	}
	if c.filtered {
		return s.filteredMin(c, required, eligible)
	}
	minimum := int32(math.MaxInt32)
	for v := range eligible {
		minimum = min(minimum, c.g.byDomain[v])
	}
	return minimum
}

// eligibleDomains are the values of the constraint's key that count for its
// skew, as kube-scheduler counts them: those of nodes that exist or that a
// pool can make, and, under nodeAffinityPolicy Honor, only of nodes the
// pod's node affinity admits (a zone only reachable through a pool the pod
// cannot use is no domain of it), and under nodeTaintsPolicy Honor only of
// nodes whose taints it tolerates.
func (s *solver) eligibleDomains(c *constraint, required []Requirements) map[string]bool {
	if c.eligible != nil {
		return c.eligible
	}
	// Pods of one workload share the answer: key it by what decides it.
	var sig strings.Builder
	sig.WriteString(c.g.key)
	if c.honorTaints {
		sig.WriteString("|taints:")
		for _, t := range c.tolerations {
			fmt.Fprintf(&sig, "%s=%s:%s:%s;", t.Key, t.Value, t.Operator, t.Effect)
		}
	}
	if c.honorAffinity {
		sig.WriteString("|affinity:")
		for _, term := range required {
			sig.WriteString(term.String())
			sig.WriteByte(';')
		}
	}
	if v, ok := s.eligible[sig.String()]; ok {
		c.eligible = v
		return v
	}
	values := map[string]bool{}
	for _, n := range s.nodes {
		v, ok := n.n.Labels[c.g.key]
		if !ok {
			continue
		}
		if c.honorTaints {
			if tolerated, _ := tolerates(c.tolerations, n.n.Taints); !tolerated {
				continue
			}
		}
		if c.honorAffinity && !matchesAnyTerm(required, n.n.Labels) {
			continue
		}
		values[v] = true
	}
	for _, ps := range s.pools {
		if c.honorTaints {
			if tolerated, _ := tolerates(c.tolerations, ps.Taints); !tolerated {
				continue
			}
		}
		if !c.honorAffinity || len(required) == 0 {
			ps.addValues(c.g.key, values)
			continue
		}
		for _, term := range required {
			ps.addValuesFor(c.g.key, term, values)
		}
	}
	if c.honorAffinity {
		for v := range values {
			if !anyTermAllows(required, c.g.key, v) {
				delete(values, v)
			}
		}
	}
	c.eligible = values
	s.eligible[sig.String()] = values
	return values
}

func matchesAnyTerm(terms []Requirements, labels map[string]string) bool {
	if len(terms) == 0 {
		return true
	}
	for _, t := range terms {
		if t.MatchesLabels(labels) {
			return true
		}
	}
	return false
}

// filteredMin is a lower bound of the least count over eligible domains when
// only nodes matching the pod's node affinity count: a node is counted only when
// it surely matches.
func (s *solver) filteredMin(c *constraint, required []Requirements, eligible map[string]bool) int32 {
	counts := make(map[string]int32, len(eligible))
	for v := range eligible {
		counts[v] = 0
	}
	add := func(t target) {
		if t.id() >= len(c.g.allByTarget) || c.g.allByTarget[t.id()] == 0 {
			return
		}
		d, decided, present := s.domainOf(t, c.g.key)
		if _, ok := counts[d.value]; !decided || !present || !ok || !s.surelyMatches(t, required) {
			return
		}
		if c.honorTaints && !s.surelyTolerated(t, c.tolerations) {
			return
		}
		counts[d.value] += c.g.allByTarget[t.id()]
	}
	for _, n := range s.nodes {
		add(target{node: n})
	}
	for _, cl := range s.claims {
		add(target{claim: cl})
	}
	minimum := int32(math.MaxInt32)
	for _, n := range counts {
		minimum = min(minimum, n)
	}
	return minimum
}

// surelyTolerated reports whether the pod tolerates the taints of target t.
func (s *solver) surelyTolerated(t target, tolerations []corev1.Toleration) bool {
	taints := []corev1.Taint(nil)
	if t.node != nil {
		taints = t.node.n.Taints
	} else {
		taints = t.claim.pool.Taints
	}
	ok, _ := tolerates(tolerations, taints)
	return ok
}

// surelyMatches reports whether every node target t can become meets one of
// the required node-affinity alternatives.
func (s *solver) surelyMatches(t target, required []Requirements) bool {
	for _, term := range required {
		ok := true
		for k, r := range term {
			d, decided, present := s.domainOf(t, k)
			if !decided || !r.Matches(d.value, present) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// anyTermAllows reports whether some alternative of required node affinity
// admits value v for key (nodeAffinityPolicy Honor counts such domains).
func anyTermAllows(terms []Requirements, key, v string) bool {
	for _, t := range terms {
		if r, ok := t[key]; !ok || r.Has(v) {
			return true
		}
	}
	return false
}
