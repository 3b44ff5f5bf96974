package aws

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
)

// DefaultUnavailableOfferingsTTL is how long a capacity mark lasts; after it,
// the offering is tried again (and Spot comes back first).
const DefaultUnavailableOfferingsTTL = 3 * time.Minute

// UnavailableOfferings remembers, for a while, what EC2 said it cannot launch:
// offerings, subnets, vCPU quota classes and whole capacity types. Solves read
// it through IsUnavailable, which is how a failed Spot launch steers the next
// plan to other Spot types, then to the next pool.
type UnavailableOfferings struct {
	clock clock.Clock
	ttl   time.Duration

	mu      sync.Mutex
	entries map[Unavailable]time.Time
	// markedAt is when each mark was last set, kept for markMemory after it
	// expires: a cool-down reads it.
	markedAt map[Unavailable]time.Time
	// changes counts marks added and removed.
	changes uint64
	marked  *prometheus.CounterVec
	current *prometheus.GaugeVec
}

// NewUnavailableOfferings returns an empty cache; marks expire after ttl.
func NewUnavailableOfferings(clk clock.Clock, ttl time.Duration, reg prometheus.Registerer) *UnavailableOfferings {
	c := &UnavailableOfferings{
		clock: clk, ttl: ttl, entries: map[Unavailable]time.Time{}, markedAt: map[Unavailable]time.Time{},
		marked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "backstop_unavailable_offerings_marked_total",
			Help: "Capacity marked unavailable after an EC2 error, by scope, capacity type and EC2 error code.",
		}, []string{"scope", "capacity_type", "reason"}),
		current: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "backstop_unavailable_offerings",
			Help: "Capacity marks in force, by scope and capacity type.",
		}, []string{"scope", "capacity_type"}),
	}
	if reg != nil {
		reg.MustRegister(c.marked, c.current)
	}
	return c
}

// key drops what does not identify a mark.
func key(u Unavailable) Unavailable {
	u.Code = ""
	return u
}

// Mark records marks until the TTL passes; marking again extends them.
func (c *UnavailableOfferings) Mark(marks ...Unavailable) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	until := now.Add(c.ttl)
	c.changes++
	for u, at := range c.markedAt {
		if now.Sub(at) > markMemory {
			delete(c.markedAt, u)
		}
	}
	for _, u := range marks {
		c.entries[key(u)] = until
		c.markedAt[key(u)] = now
		c.marked.WithLabelValues(string(u.Scope), u.CapacityType, u.Code).Inc()
	}
	c.refreshGauge()
}

// markMemory is how long the time of an expired mark is remembered.
const markMemory = time.Hour

// LastMarked is when an instance type bought as capacityType in a zone was
// last put under a mark (its own, its capacity type's or its family class's),
// expired or not; zero when not within the last hour.
func (c *UnavailableOfferings) LastMarked(instanceType, zone, capacityType string) time.Time {
	return c.LastMarkedIn(instanceType, zone, capacityType, "")
}

// LastMarkedIn is LastMarked for launches into a placement group ("" for none).
func (c *UnavailableOfferings) LastMarkedIn(instanceType, zone, capacityType, placementGroup string) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var last time.Time
	for _, u := range offeringMarks(instanceType, zone, capacityType, placementGroup) {
		if at := c.markedAt[u]; at.After(last) {
			last = at
		}
	}
	return last
}

// offeringMarks are the marks that close an offering: its own, its capacity
// type's, its quota class's, and in a placement group the group's own marks
// of it and of its zone.
func offeringMarks(instanceType, zone, capacityType, placementGroup string) []Unavailable {
	out := []Unavailable{
		{Scope: ScopeOffering, CapacityType: capacityType, InstanceType: instanceType, Zone: zone},
		{Scope: ScopeCapacityType, CapacityType: capacityType},
		{Scope: ScopeFamilyClass, CapacityType: capacityType, FamilyClass: FamilyClass(instanceType)},
	}
	if placementGroup != "" {
		out = append(out, Unavailable{Scope: ScopeOffering, CapacityType: capacityType, InstanceType: instanceType, Zone: zone, PlacementGroup: placementGroup},
			Unavailable{Scope: ScopePlacementZone, Zone: zone, PlacementGroup: placementGroup})
	}
	return out
}

// IsUnavailable reports whether an instance type bought as capacityType in a
// zone is under any mark.
func (c *UnavailableOfferings) IsUnavailable(instanceType, zone, capacityType string) bool {
	return c.IsUnavailableIn(instanceType, zone, capacityType, "")
}

// IsUnavailableIn is IsUnavailable for launches into a placement group ("" for none).
func (c *UnavailableOfferings) IsUnavailableIn(instanceType, zone, capacityType, placementGroup string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	for _, u := range offeringMarks(instanceType, zone, capacityType, placementGroup) {
		if c.live(u, now) {
			return true
		}
	}
	return false
}

// SubnetUnavailable reports whether a subnet is marked out of addresses.
func (c *UnavailableOfferings) SubnetUnavailable(subnet string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live(Unavailable{Scope: ScopeSubnet, Subnet: subnet}, c.clock.Now())
}

func (c *UnavailableOfferings) live(u Unavailable, now time.Time) bool {
	until, ok := c.entries[u]
	if !ok {
		return false
	}
	if !now.Before(until) {
		delete(c.entries, u)
		c.changes++
		c.refreshGauge()
		return false
	}
	return true
}

// MarksVersion identifies the marks in force at one time: an answer built
// under them holds while no mark is added and none expires.
type MarksVersion struct {
	changes uint64
	// expiry is when the first of the marks expires; zero without marks.
	expiry time.Time
}

// Same reports whether the marks are still those of v at now.
func (v MarksVersion) Same(old MarksVersion, now time.Time) bool {
	return v.changes == old.changes && (old.expiry.IsZero() || now.Before(old.expiry))
}

// Version is the marks' version now.
func (c *UnavailableOfferings) Version() MarksVersion {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := MarksVersion{changes: c.changes}
	for _, until := range c.entries {
		if v.expiry.IsZero() || until.Before(v.expiry) {
			v.expiry = until
		}
	}
	return v
}

func (c *UnavailableOfferings) refreshGauge() {
	c.current.Reset()
	for u := range c.entries {
		c.current.WithLabelValues(string(u.Scope), u.CapacityType).Inc()
	}
}
