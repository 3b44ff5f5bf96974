package scheduling

import (
	"math"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Offering is one way to buy an instance type: a zone and a capacity type at a
// price. Unavailable offerings (marked by the launcher after a capacity error)
// are ignored, which is how a failed Spot launch steers the next solve.
type Offering struct {
	Zone string
	// ZoneID is the zone's other name where the cloud has one (AWS's zone
	// id, the same zone in every account); requirements and topology on
	// ZoneIDLabelKey are planned through it.
	ZoneID       string
	CapacityType string
	Price        float64
	Available    bool
	// LastUnavailable is when the cloud last said it could not launch this
	// offering, even if that has since expired; zero when not recently.
	// Planning ignores it; moving work back to a preferred pool waits a
	// cool-down after it, so a flapping offering is not chased.
	LastUnavailable time.Time
	// ReservationID names the capacity reservation a reserved offering
	// launches into ("" for others), and ReservationCapacity how many more
	// instances it takes. A plan puts at most that many new NodeClaims in it.
	ReservationID       string
	ReservationCapacity int
}

// ReservationIDLabelKey is the label naming a node's capacity reservation.
// A plan pins each NodeClaim it puts in a reservation to that reservation
// with it: Karpenter's AWS key, Backstop's one cloud's.
var ReservationIDLabelKey = "karpenter.k8s.aws/capacity-reservation-id"

// ZoneIDLabelKey is the label naming a node's zone by its id: Karpenter's
// AWS key. It follows the zone: a node's zone decides it.
var ZoneIDLabelKey = "topology.k8s.aws/zone-id"

// InstanceType is a kind of machine as the scheduler sees it.
type InstanceType struct {
	Name string
	// Requirements are the labels a node of this type carries (instance type,
	// architecture, OS, family, size...). Zone and capacity type come from Offerings.
	Requirements Requirements
	Capacity     Resources
	// Overhead is kube-reserved + system-reserved + the eviction threshold.
	Overhead  Resources
	Offerings []Offering
}

// Allocatable is what pods can use on a node of this type.
func (it *InstanceType) Allocatable() Resources { return it.Capacity.Sub(it.Overhead) }

// NodePool is a pool as the scheduler sees it: what its nodes may be, their
// taints, its limits and what it already uses, and its instance types.
type NodePool struct {
	Name   string
	Weight int32
	// Requirements of spec.template.spec.requirements.
	Requirements Requirements
	// Labels of spec.template.metadata.labels.
	Labels        map[string]string
	Taints        []corev1.Taint
	StartupTaints []corev1.Taint
	// Limits of spec.limits; "nodes" limits the node count. Nil means unlimited.
	Limits corev1.ResourceList
	// Usage is the capacity of the pool's existing nodes and in-flight NodeClaims,
	// with the node count in Pods' place in Nodes.
	Usage         Resources
	Nodes         int64
	InstanceTypes []*InstanceType
	// NotReady, when set, says why the pool cannot launch now (its NodeClass is
	// not ready); the pool is skipped with that reason.
	NotReady string
}

// ExistingNode is capacity that exists or is on its way: a Node, or an
// in-flight NodeClaim whose Node has not registered yet.
type ExistingNode struct {
	Name        string
	Labels      map[string]string
	Taints      []corev1.Taint
	Allocatable Resources
	// Pods bound or nominated to the node; they use its resources and count for
	// topology spread and pod affinity.
	Pods []*corev1.Pod
}

// PreferencePolicy says whether preferred affinities and ScheduleAnyway spread
// constraints are honoured when capacity is planned.
type PreferencePolicy string

// Preference policies.
const (
	// PreferencesRespect tries preferences as if required and relaxes them, the
	// lightest first, only when a pod cannot be placed otherwise (Karpenter's default).
	PreferencesRespect PreferencePolicy = "Respect"
	// PreferencesIgnore plans with required constraints only.
	PreferencesIgnore PreferencePolicy = "Ignore"
)

// Input is everything one solve looks at.
type Input struct {
	Pods []*corev1.Pod
	// NodePools in any order; Solve tries them by descending weight, then name.
	NodePools []*NodePool
	Nodes     []*ExistingNode
	// DaemonSetPods are the pod templates of DaemonSets, as pods: each new node
	// reserves room for those that would run on it.
	DaemonSetPods []*corev1.Pod
	// NamespaceLabels are the labels of each namespace, for namespaceSelector terms.
	NamespaceLabels  map[string]map[string]string
	PreferencePolicy PreferencePolicy
	// ReservedInFlight counts, by capacity reservation, the NodeClaims
	// already put in it and not launched yet: the room its offerings show
	// does not know them, so a plan leaves it for them.
	ReservedInFlight map[string]int
	// MaxInstanceTypes caps the instance-type options of each NodeClaim (60 when 0).
	MaxInstanceTypes int
	// Fill asks, by NodePool, for that many NodeClaims without pods: the
	// nodes a static NodePool (spec.replicas) keeps whatever the pods. They
	// are opened before any pod is planned, within the pool's limits.nodes
	// and its reservations' room, with the pool's cheapest instance types.
	Fill map[string]int
}

// Placement puts a pod on an existing node or in-flight NodeClaim.
type Placement struct {
	Pod  *corev1.Pod
	Node string
}

// NewNodeClaim is a node to create.
type NewNodeClaim struct {
	NodePool string
	// Requirements are the pool's, narrowed by the pods and by topology, with the
	// instance types, zones and capacity types still possible.
	Requirements Requirements
	// InstanceTypes that fit the pods plus DaemonSet overhead, cheapest first.
	InstanceTypes []*InstanceType
	Pods          []*corev1.Pod
	// Requests of the pods plus the DaemonSet overhead of the cheapest option.
	Requests      Resources
	Labels        map[string]string
	Taints        []corev1.Taint
	StartupTaints []corev1.Taint
}

// CheapestOffering returns the cheapest available offering allowed by the
// claim's zone and capacity-type requirements, and its price; math.Inf when none.
func (c *NewNodeClaim) CheapestOffering() (*InstanceType, Offering, float64) {
	var best *InstanceType
	var bestOffer Offering
	price := math.Inf(1)
	for _, it := range c.InstanceTypes {
		for _, o := range it.Offerings {
			if o.Available && o.Price < price && offeringAllowed(c.Requirements, o) {
				best, bestOffer, price = it, o, o.Price
			}
		}
	}
	return best, bestOffer, price
}

// Step is one decision of a plan, in the order it was made: the pod goes to an
// existing node (Node set) or to NewNodeClaims[Claim].
type Step struct {
	Pod   *corev1.Pod
	Node  string
	Claim int
}

// Unschedulable is a pod no capacity could take, with a reason per NodePool.
type Unschedulable struct {
	Pod *corev1.Pod
	// Reasons by NodePool name, plus "" for existing capacity when relevant.
	Reasons map[string]string
}

// Message renders the reasons one pool after another, in pool order.
func (u Unschedulable) Message(poolOrder []string) string {
	msg := ""
	for _, name := range poolOrder {
		if r, ok := u.Reasons[name]; ok {
			if msg != "" {
				msg += "; "
			}
			msg += name + ": " + r
		}
	}
	if msg == "" {
		keys := make([]string, 0, len(u.Reasons))
		for k := range u.Reasons {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if msg != "" {
				msg += "; "
			}
			if k == "" {
				msg += u.Reasons[k]
			} else {
				msg += k + ": " + u.Reasons[k]
			}
		}
	}
	return msg
}

// Plan is the result of a solve.
type Plan struct {
	Existing      []Placement
	NewNodeClaims []*NewNodeClaim
	Unschedulable []Unschedulable
	// Steps lists every placement in decision order; a sequential scheduler
	// binding pods in this order sees every constraint hold.
	Steps []Step
	// PoolOrder is the order pools were tried in.
	PoolOrder []string
	// Unfilled says, by NodePool, why fewer NodeClaims than Input.Fill
	// asked for were planned.
	Unfilled map[string]string
}

// Price is the hourly price of the new NodeClaims at their cheapest offerings.
func (p *Plan) Price() float64 {
	total := 0.0
	for _, c := range p.NewNodeClaims {
		if _, _, price := c.CheapestOffering(); !math.IsInf(price, 1) {
			total += price
		}
	}
	return total
}

func offeringAllowed(reqs Requirements, o Offering) bool {
	if r, ok := reqs[corev1.LabelTopologyZone]; ok && !r.Has(o.Zone) {
		return false
	}
	if r, ok := reqs[capacityTypeKey]; ok && !r.Has(o.CapacityType) {
		return false
	}
	if r, ok := reqs[ZoneIDLabelKey]; ok && !r.Matches(o.ZoneID, o.ZoneID != "") {
		return false
	}
	if o.ReservationID != "" {
		if r, ok := reqs[ReservationIDLabelKey]; ok && !r.Has(o.ReservationID) {
			return false
		}
	}
	return true
}
