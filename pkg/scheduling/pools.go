package scheduling

import (
	"math"
	"sort"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/backstop-sh/backstop/apis/v1"
)

// poolState is a NodePool digested for one solve.
type poolState struct {
	*NodePool
	// reqs are the pool's requirements, its template labels, its own name label,
	// and the zones and capacity types its instance types offer.
	reqs  Requirements
	types []*InstanceType
	// usable is each type's allocatable less the DaemonSet pods that would run on it.
	usable  []Resources
	daemons []Resources
	// daemonPorts are, per type, the host ports its DaemonSet pods take.
	daemonPorts [][]hostPort
	typeKeys    map[string]bool
	memo        map[string]*typeSet
	// limits: remaining capacity (after existing usage and planned claims) in
	// the limited dimensions; limited is false for a pool without limits.
	limited        bool
	limitNames     []corev1.ResourceName
	remaining      map[corev1.ResourceName]int64
	remainingNodes int64
	nodesLimited   bool
	// reservedOnly pools launch only into capacity reservations: they open
	// at most reservedRoom claims, the room their reservations have, so
	// pods beyond it go on to the next pool.
	reservedOnly bool
	reservedRoom int64
	// unusable says why no claim can come from this pool at all.
	unusable                     string
	zoneIndex, capacityTypeIndex *offeringIndex
}

// typeSet is the pool's instance types compatible with one set of claim
// requirements, cheapest first.
type typeSet struct {
	compat bitset
	order  []int32
	price  []float64
	// zones and capacityTypes are, per type, bit masks (by offeringIndex) of the
	// zones and capacity types it can be bought in under these requirements.
	zones, capacityTypes []uint64
}

// offeringIndex numbers zones and capacity types so that sets of them are bit masks.
type offeringIndex struct {
	bits  map[string]int
	names []string
	// ids are the zones' ids, where offerings carry them (zones only).
	ids map[string]string
}

// idOf returns the zone's id, "" when no offering named one.
func (x *offeringIndex) idOf(zone string) string { return x.ids[zone] }

func (x *offeringIndex) bit(name string) uint64 {
	i, ok := x.bits[name]
	if !ok {
		i = len(x.names)
		x.bits[name] = i
		x.names = append(x.names, name)
	}
	if i >= 64 {
		// More than 64 zones or capacity types: treat the rest as one bucket,
		// which only makes pinning try them in turn.
		i = 63
	}
	return 1 << uint(i)
}

func (x *offeringIndex) values(mask uint64) []string {
	var out []string
	for i, n := range x.names {
		if i < 64 && mask&(1<<uint(i)) != 0 {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

func newPoolState(p *NodePool, daemons []*podInfo, zoneIndex, capacityTypeIndex *offeringIndex) *poolState {
	ps := &poolState{NodePool: p, memo: map[string]*typeSet{}, typeKeys: map[string]bool{}, zoneIndex: zoneIndex, capacityTypeIndex: capacityTypeIndex}
	ps.reqs = p.Requirements.Clone()
	if ps.reqs == nil {
		ps.reqs = Requirements{}
	}
	ps.reqs.Merge(FromLabels(p.Labels))
	ps.reqs.Add(MustRequirement(v1.NodePoolLabelKey, v1.OpIn, p.Name))
	for _, it := range p.InstanceTypes {
		for k := range it.Requirements {
			ps.typeKeys[k] = true
		}
	}
	zones, capacityTypes := map[string]bool{}, map[string]bool{}
	for _, it := range p.InstanceTypes {
		if !ps.typeCompatible(it, ps.reqs) {
			continue
		}
		for _, o := range it.Offerings {
			if o.ZoneID != "" && zoneIndex.ids[o.Zone] == "" {
				if zoneIndex.ids == nil {
					zoneIndex.ids = map[string]string{}
				}
				zoneIndex.ids[o.Zone] = o.ZoneID
			}
			if o.Available && offeringAllowed(ps.reqs, o) {
				zones[o.Zone], capacityTypes[o.CapacityType] = true, true
			}
		}
		ps.types = append(ps.types, it)
	}
	ps.reqs.Add(MustRequirement(zoneKey, v1.OpIn, keys(zones)...))
	ps.reqs.Add(MustRequirement(capacityTypeKey, v1.OpIn, keys(capacityTypes)...))
	switch {
	case p.NotReady != "":
		ps.unusable = p.NotReady
	case len(p.InstanceTypes) == 0:
		ps.unusable = "the pool has no instance types (is its EC2NodeClass resolved?)"
	case len(ps.types) == 0:
		ps.unusable = "no instance type meets the pool's requirements with an available offering"
	}
	ps.usable = make([]Resources, len(ps.types))
	ps.daemons = make([]Resources, len(ps.types))
	ps.daemonPorts = make([][]hostPort, len(ps.types))
	for i, it := range ps.types {
		for _, ds := range daemons {
			if ps.daemonRuns(ds, it) {
				ps.daemons[i] = ps.daemons[i].Add(ds.requests)
				ps.daemonPorts[i] = append(ps.daemonPorts[i], ds.hostPorts...)
			}
		}
		ps.usable[i] = it.Allocatable().Sub(ps.daemons[i])
	}
	ps.initLimits()
	return ps
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// initReserved caps a pool that launches only into capacity reservations
// at the room they have, less the NodeClaims in flight to each.
func (ps *poolState) initReserved(inFlight map[string]int) {
	r, ok := ps.Requirements[capacityTypeKey]
	if !ok || !r.Has(v1.CapacityTypeReserved) || r.Has(v1.CapacityTypeSpot) || r.Has(v1.CapacityTypeOnDemand) {
		return
	}
	ps.reservedOnly = true
	room := map[string]int{}
	for _, it := range ps.types {
		for _, o := range it.Offerings {
			if o.CapacityType == v1.CapacityTypeReserved && o.Available && o.ReservationID != "" && offeringAllowed(ps.Requirements, o) {
				room[o.ReservationID] = max(room[o.ReservationID], o.ReservationCapacity)
			}
		}
	}
	for id, n := range room {
		ps.reservedRoom += int64(max(n-inFlight[id], 0))
	}
}

func (ps *poolState) initLimits() {
	ps.remaining = map[corev1.ResourceName]int64{}
	for name, q := range ps.Limits {
		if name == "nodes" {
			ps.nodesLimited, ps.remainingNodes = true, q.Value()-ps.Nodes
			continue
		}
		ps.limited = true
		ps.limitNames = append(ps.limitNames, name)
		var limit int64
		if name == corev1.ResourceCPU {
			limit = q.MilliValue()
		} else {
			limit = q.Value()
		}
		ps.remaining[name] = limit - ps.Usage.Get(name)
	}
	sort.Slice(ps.limitNames, func(i, j int) bool { return ps.limitNames[i] < ps.limitNames[j] })
}

// withinLimits reports whether a node of capacity c fits the remaining limits,
// after giving back what the claim already reserved.
func (ps *poolState) withinLimits(c, reserved Resources) bool {
	for _, name := range ps.limitNames {
		if c.Get(name) > ps.remaining[name]+reserved.Get(name) {
			return false
		}
	}
	return true
}

// typeCompatible reports whether a node of type it could meet reqs. Keys some
// instance types define but this one lacks mean the label will be absent; keys
// no type defines are set by the claim itself.
func (ps *poolState) typeCompatible(it *InstanceType, reqs Requirements) bool {
	for k, r := range reqs {
		if k == zoneKey || k == capacityTypeKey || k == ZoneIDLabelKey {
			continue
		}
		if tr, ok := it.Requirements[k]; ok {
			if !tr.Intersects(r) {
				return false
			}
		} else if ps.typeKeys[k] && !r.AllowsAbsent() {
			return false
		}
	}
	return !math.IsInf(cheapestPrice(it, reqs), 1)
}

func cheapestPrice(it *InstanceType, reqs Requirements) float64 {
	price := math.Inf(1)
	for _, o := range it.Offerings {
		if o.Available && o.Price < price && offeringAllowed(reqs, o) {
			price = o.Price
		}
	}
	return price
}

// typesFor returns the pool's types compatible with reqs, memoised by sig.
func (ps *poolState) typesFor(reqs Requirements, sig string) *typeSet {
	if ts, ok := ps.memo[sig]; ok {
		return ts
	}
	ts := &typeSet{compat: newBitset(len(ps.types)), price: make([]float64, len(ps.types)),
		zones: make([]uint64, len(ps.types)), capacityTypes: make([]uint64, len(ps.types))}
	for i, it := range ps.types {
		if ps.typeCompatible(it, reqs) {
			ts.compat.set(i)
			ts.price[i] = cheapestPrice(it, reqs)
			ts.order = append(ts.order, int32(i))
			for _, o := range it.Offerings {
				if o.Available && offeringAllowed(reqs, o) {
					ts.zones[i] |= ps.zoneIndex.bit(o.Zone)
					ts.capacityTypes[i] |= ps.capacityTypeIndex.bit(o.CapacityType)
				}
			}
		}
	}
	sort.SliceStable(ts.order, func(a, b int) bool {
		ia, ib := ts.order[a], ts.order[b]
		if ts.price[ia] != ts.price[ib] {
			return ts.price[ia] < ts.price[ib]
		}
		return ps.types[ia].Name < ps.types[ib].Name
	})
	ps.memo[sig] = ts
	return ts
}

// daemonRuns reports whether a DaemonSet pod would run on a node of type it
// from this pool: it tolerates the pool's taints and one of its node-affinity
// terms matches the pool and the type.
func (ps *poolState) daemonRuns(ds *podInfo, it *InstanceType) bool {
	if ds.err != nil {
		return false
	}
	if ok, _ := tolerates(ds.tolerations, ps.Taints); !ok {
		return false
	}
	for _, term := range ds.terms {
		if ps.termAllows(term, it) {
			return true
		}
	}
	return false
}

// termAllows checks a node-affinity term against the pool's requirements and one
// instance type, treating labels neither defines as absent.
func (ps *poolState) termAllows(term Requirements, it *InstanceType) bool {
	for k, r := range term {
		if k == ZoneIDLabelKey {
			if len(ps.zoneIDs(r)) == 0 {
				return false
			}
			continue
		}
		if pr, ok := ps.reqs[k]; ok && !pr.Intersects(r) {
			return false
		}
		tr, inType := it.Requirements[k]
		if inType && !tr.Intersects(r) {
			return false
		}
		if _, inPool := ps.reqs[k]; !inPool && !inType && !r.AllowsAbsent() {
			return false
		}
	}
	return true
}

// zoneIDs are the ids of the pool's zones that r allows (all with r nil).
// The pool's zones are those of the offerings its requirements allow, so a
// zone-id requirement of the pool is already met by each of them.
func (ps *poolState) zoneIDs(r *Requirement) []string {
	var out []string
	zones, ok := ps.reqs[zoneKey]
	if !ok {
		return nil
	}
	for _, z := range zones.Values() {
		if id := ps.zoneIndex.idOf(z); id != "" && (r == nil || r.Has(id)) {
			out = append(out, id)
		}
	}
	return out
}

// zoneOf returns the zone of an id, "" when none has it.
func (x *offeringIndex) zoneOf(id string) string {
	for z, zid := range x.ids {
		if zid == id {
			return z
		}
	}
	return ""
}
