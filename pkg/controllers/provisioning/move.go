package provisioning

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

// MoveRequest asks where the pods of some nodes would go if the nodes left.
type MoveRequest struct {
	// Nodes are the names of the nodes that would leave.
	Nodes []string
	// To are the NodePools that may take the pods: their existing nodes,
	// in-flight NodeClaims and new NodeClaims. Nothing else is planned onto.
	To map[string]bool
	// Usable, when set, keeps only the offerings it accepts in the To pools.
	Usable func(scheduling.Offering) bool
	// Exclude names nodes and in-flight NodeClaims of the To pools whose
	// room is spoken for (replacements of other moves).
	Exclude map[string]bool
	// AnyNode makes every existing node a target, whatever its pool.
	AnyNode bool
	// NoNew allows no new NodeClaim: the pods must fit existing room.
	NoNew bool
}

// Move is a planned move.
type Move struct {
	// Plan places every pod of the leaving nodes that must leave.
	Plan *scheduling.Plan
	// Pools are the NodePools of Plan's NodeClaims, by name.
	Pools map[string]*v1.NodePool
	// Pods that would leave.
	Pods int
	// LeavingPrice is the hourly price of the leaving nodes, at their
	// offerings' prices (0 for a node whose offering is not known).
	LeavingPrice float64
}

// MoveRefusal says why a move cannot be planned; it is an answer, not a
// failure of the planner.
type MoveRefusal struct {
	// Reason is short and stable: pods_pending, unschedulable, elsewhere.
	Reason  string
	Message string
}

func (r *MoveRefusal) Error() string { return r.Message }

// notTarget keeps pods off capacity a move may not use, while that capacity
// still counts for topology spread and affinity.
var notTarget = corev1.Taint{Key: "backstop.sh/not-a-move-target", Effect: corev1.TaintEffectNoSchedule}

// MoveBase is the cluster as one snapshot, on which many moves can be
// planned: consolidation weighs hundreds of candidates against one view.
type MoveBase struct{ snap *snapshot }

// MoveBase takes the snapshot moves are planned on. It refuses
// (MoveRefusal) while pods are pending, backing off or leaving a node, so
// a move never competes with provisioning for room.
func (p *Provisioner) MoveBase(ctx context.Context) (*MoveBase, error) {
	snap, err := p.takeSnapshot(ctx)
	if err != nil {
		return nil, err
	}
	if snap.unsettled > 0 {
		return nil, &MoveRefusal{Reason: "pods_pending", Message: fmt.Sprintf("%d pods are pending or leaving: moves wait until provisioning has placed them", snap.unsettled)}
	}
	return &MoveBase{snap: snap}, nil
}

// PlanMove plans one move on a fresh snapshot.
func (p *Provisioner) PlanMove(ctx context.Context, req MoveRequest) (*Move, error) {
	base, err := p.MoveBase(ctx)
	if err != nil {
		return nil, err
	}
	return base.Plan(req)
}

// Plan plans, with the provisioner's own planner over the snapshot, where
// the pods that must leave req.Nodes would go. It refuses (MoveRefusal)
// when any pod would be left without a place or would land outside the
// targets. The snapshot is not changed.
func (b *MoveBase) Plan(req MoveRequest) (*Move, error) {
	snap := b.snap
	leaving := map[string]bool{}
	for _, n := range req.Nodes {
		leaving[n] = true
	}
	in := *snap.input
	in.Pods = nil
	in.Nodes = nil
	targetNodes := map[string]bool{}
	for _, n := range snap.input.Nodes {
		if !leaving[n.Name] {
			if (req.AnyNode || req.To[n.Labels[v1.NodePoolLabelKey]]) && !req.Exclude[n.Name] {
				targetNodes[n.Name] = true
				in.Nodes = append(in.Nodes, n)
				continue
			}
			c := *n
			c.Taints = append(append([]corev1.Taint(nil), n.Taints...), notTarget)
			in.Nodes = append(in.Nodes, &c)
			continue
		}
		for _, pod := range n.Pods {
			if pod.DeletionTimestamp != nil || !scheduling.MustLeave(pod) {
				continue
			}
			moved := pod.DeepCopy()
			moved.Spec.NodeName = ""
			in.Pods = append(in.Pods, moved)
		}
	}
	in.NodePools = nil
	leavingPrice := 0.0
	for _, n := range snap.input.Nodes {
		if leaving[n.Name] {
			leavingPrice += offeringPrice(snap.input.NodePools, n.Labels)
		}
	}
	for _, sp := range snap.input.NodePools {
		if !req.To[sp.Name] || req.NoNew {
			continue
		}
		c := *sp
		if req.Usable != nil {
			c.InstanceTypes = usableTypes(sp.InstanceTypes, req.Usable)
		}
		in.NodePools = append(in.NodePools, &c)
	}
	if len(in.Pods) == 0 {
		return nil, &MoveRefusal{Reason: "empty", Message: "no pod would have to move: an empty node is consolidation's to remove"}
	}
	plan := scheduling.Solve(&in)
	if len(plan.Unschedulable) > 0 {
		u := plan.Unschedulable[0]
		return nil, &MoveRefusal{Reason: "unschedulable", Message: fmt.Sprintf("%d of %d pods would have no place, first %s/%s: %s",
			len(plan.Unschedulable), len(in.Pods), u.Pod.Namespace, u.Pod.Name, u.Message(plan.PoolOrder))}
	}
	for _, pl := range plan.Existing {
		if !targetNodes[pl.Node] {
			return nil, &MoveRefusal{Reason: "elsewhere", Message: fmt.Sprintf("pod %s/%s would go to %s, outside the target pools", pl.Pod.Namespace, pl.Pod.Name, pl.Node)}
		}
	}
	pools := map[string]*v1.NodePool{}
	for _, nc := range plan.NewNodeClaims {
		pools[nc.NodePool] = snap.pools[nc.NodePool]
	}
	return &Move{Plan: plan, Pools: pools, Pods: len(in.Pods), LeavingPrice: leavingPrice}, nil
}

// offeringPrice is the price of the offering a node with these labels was
// bought at, from its pool's instance types; 0 when unknown.
func offeringPrice(pools []*scheduling.NodePool, labels map[string]string) float64 {
	for _, sp := range pools {
		if sp.Name != labels[v1.NodePoolLabelKey] {
			continue
		}
		for _, it := range sp.InstanceTypes {
			if it.Name != labels[corev1.LabelInstanceTypeStable] {
				continue
			}
			for _, o := range it.Offerings {
				if o.Zone == labels[corev1.LabelTopologyZone] && o.CapacityType == labels[v1.CapacityTypeLabelKey] {
					return o.Price
				}
			}
		}
	}
	return 0
}

// usableTypes copies the instance types with the offerings usable refuses
// made unavailable; the cached types are shared and never changed.
func usableTypes(types []*scheduling.InstanceType, usable func(scheduling.Offering) bool) []*scheduling.InstanceType {
	out := make([]*scheduling.InstanceType, 0, len(types))
	for _, it := range types {
		c := *it
		c.Offerings = make([]scheduling.Offering, len(it.Offerings))
		for i, o := range it.Offerings {
			o.Available = o.Available && usable(o)
			c.Offerings[i] = o
		}
		out = append(out, &c)
	}
	return out
}

// CreateReplacement creates the NodeClaim of a planned move with the given
// annotations; it is launched like any other.
func (p *Provisioner) CreateReplacement(ctx context.Context, pool *v1.NodePool, nc *scheduling.NewNodeClaim, annotations map[string]string) (*v1.NodeClaim, error) {
	return p.create(ctx, pool, nc, annotations)
}

// DescribeClaim says what a planned NodeClaim would be at its cheapest
// offering: "c6i.large spot".
func DescribeClaim(nc *scheduling.NewNodeClaim) string {
	it, o, _ := nc.CheapestOffering()
	if it == nil {
		return "a " + nc.NodePool + " node"
	}
	return strings.TrimSpace(it.Name + " " + o.CapacityType)
}
