package disruption

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/controllers/provisioning"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

// maxMultiNode bounds how many nodes one multi-node consolidation weighs.
const maxMultiNode = 100

// podSet is a node's pods that must leave, and since when it has had them.
type podSet struct {
	key   string
	since time.Time
}

// stability remembers since when each node has kept the same pods: a node
// is underused for consolidateAfter only if nothing arrived or left.
type stability struct {
	mu    sync.Mutex
	since map[string]podSet
}

func (s *stability) observe(w *world, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	for _, c := range w.claims {
		if c.Status.NodeName == "" {
			continue
		}
		seen[c.Name] = true
		var uids []string
		for _, p := range w.pods[c.Status.NodeName] {
			if p.DeletionTimestamp == nil && scheduling.MustLeave(p) {
				uids = append(uids, string(p.UID))
			}
		}
		sort.Strings(uids)
		key := strings.Join(uids, ",")
		if old, ok := s.since[c.Name]; !ok || old.key != key {
			s.since[c.Name] = podSet{key: key, since: now}
		}
	}
	for name := range s.since {
		if !seen[name] {
			delete(s.since, name)
		}
	}
}

// unchangedFor reports whether a node has kept its pods for at least d.
func (s *stability) unchangedFor(claim string, d time.Duration, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps, ok := s.since[claim]
	return ok && now.Sub(ps.since) >= d
}

// consolidate looks for underused nodes of pools that allow it and makes
// one decision, the one that removes the most nodes: several nodes whose
// pods fit on the rest of the cluster plus at most one new node, else one
// node deleted (its pods fit elsewhere) or replaced by a cheaper one.
func (r *Replacer) consolidate(ctx context.Context, w *world) error {
	cands, allowed := r.consolidationCandidates(ctx, w)
	r.consolidationEligible = len(cands)
	if len(cands) == 0 {
		return nil
	}
	fp := fingerprint(w, &r.stable)
	if r.noConsolidation.skip(fp, r.clock.Now()) {
		return nil
	}
	base, err := r.mover.MoveBase(ctx)
	if err != nil {
		if errors.As(err, new(*provisioning.MoveRefusal)) {
			log.FromContext(ctx).V(1).Info("no consolidation now", "why", err.Error())
			return nil
		}
		return err
	}
	d := r.Decide(base, cands, allowed, spokenFor(w), w.pools)
	if d == nil {
		// Planning again on the same cluster finds nothing again.
		r.noConsolidation.record(fp, r.clock.Now())
		return nil
	}
	return r.begin(ctx, w, d, spokenFor(w))
}

// fruitless remembers a cluster on which a search found nothing, so the
// search is not repeated every round until the cluster changes (or a
// minute passes: prices and capacity marks change without it).
type fruitless struct {
	fingerprint string
	until       time.Time
}

func (f *fruitless) skip(fp string, now time.Time) bool {
	return fp == f.fingerprint && now.Before(f.until)
}

func (f *fruitless) record(fp string, now time.Time) {
	f.fingerprint, f.until = fp, now.Add(time.Minute)
}

// fingerprint identifies what a search looks at: each NodeClaim with its
// pods and disruption annotations, the NodePools' generations and the PDBs.
func fingerprint(w *world, s *stability) string {
	h := fnv.New64a()
	s.mu.Lock()
	for _, c := range w.claims {
		fmt.Fprintf(h, "%s|%s|%s|%s|%s|%v;", c.Name, s.since[c.Name].key, c.Annotations[ReplacingAnnotation], c.Annotations[StartedAnnotation],
			c.Annotations[RolledBackAnnotation], c.DeletionTimestamp != nil)
	}
	s.mu.Unlock()
	for _, p := range sortedPools(w.pools) {
		fmt.Fprintf(h, "%s/%d;", p.Name, p.Generation)
	}
	for i := range w.pdbs {
		fmt.Fprintf(h, "%s/%s/%d;", w.pdbs[i].Namespace, w.pdbs[i].Name, w.pdbs[i].Status.DisruptionsAllowed)
	}
	return strconv.FormatUint(h.Sum64(), 16)
}

// consolidationCandidates are the nodes consolidation may weigh, the
// cheapest to disrupt first, and how many each pool's budget allows.
func (r *Replacer) consolidationCandidates(ctx context.Context, w *world) ([]Candidate, map[string]int) {
	now := r.clock.Now()
	var cands []Candidate
	allowed := map[string]int{}
	for _, pool := range sortedPools(w.pools) {
		after := pool.Spec.Disruption.ConsolidateAfter.Duration
		if pool.Spec.Disruption.ConsolidationPolicy != v1.ConsolidationPolicyWhenEmptyOrUnderutilized || after == nil || pool.DeletionTimestamp != nil {
			continue
		}
		members := w.members(pool)
		for _, c := range members.idle {
			cand := Candidate{Claim: c, Node: w.nodes[c.Status.NodeName], Pods: w.pods[c.Status.NodeName]}
			if why := r.whyNot(w, cand, now); why != nil {
				log.FromContext(ctx).V(1).Info("not consolidating node", "nodeclaim", c.Name, "why", why.String())
				continue
			}
			if !hasMovablePods(cand) || r.coolingDown(c, now) || r.mover.Nominated(ctx, c.Name) || !r.stable.unchangedFor(c.Name, *after, now) {
				// Empty nodes are emptiness's to remove.
				continue
			}
			cands = append(cands, cand)
		}
		allowed[pool.Name] = members.allowed(ctx, v1.DisruptionReasonUnderutilized, now)
	}
	sort.SliceStable(cands, func(a, b int) bool {
		pa, pb := movable(cands[a]), movable(cands[b])
		if pa != pb {
			return pa < pb
		}
		return cands[a].Claim.CreationTimestamp.Before(&cands[b].Claim.CreationTimestamp)
	})
	return cands, allowed
}

func movable(c Candidate) int {
	n := 0
	for _, p := range c.Pods {
		if p.DeletionTimestamp == nil && scheduling.MustLeave(p) {
			n++
		}
	}
	return n
}

func hasMovablePods(c Candidate) bool { return movable(c) > 0 }

// Decide picks the consolidation to make over candidates (cheapest to
// disrupt first) on one snapshot, within each pool's allowance; nil when
// none saves money. It calls no API: every plan runs on base.
func (r *Replacer) Decide(base *provisioning.MoveBase, cands []Candidate, allowed map[string]int, spoken map[string]bool, pools map[string]*v1.NodePool) *Decision {
	var within []Candidate
	left := map[string]int{}
	for k, v := range allowed {
		left[k] = v
	}
	for _, c := range cands {
		if pool := c.Claim.Labels[v1.NodePoolLabelKey]; left[pool] > 0 {
			left[pool]--
			within = append(within, c)
		}
	}
	if len(within) > maxMultiNode {
		within = within[:maxMultiNode]
	}
	to := map[string]bool{}
	for name := range pools {
		to[name] = true
	}
	now := r.clock.Now()
	usable := func(o scheduling.Offering) bool {
		return o.LastUnavailable.IsZero() || now.Sub(o.LastUnavailable) >= r.opts.Cooldown
	}
	try := func(group []Candidate) *Decision {
		var nodes []string
		var claims []*v1.NodeClaim
		for _, c := range group {
			nodes = append(nodes, c.Claim.Status.NodeName)
			claims = append(claims, c.Claim)
		}
		move, err := base.Plan(provisioning.MoveRequest{Nodes: nodes, To: to, AnyNode: true, Exclude: spoken, Usable: usable})
		if err != nil || len(move.Plan.NewNodeClaims) > 1 {
			return nil
		}
		d := &Decision{reason: ReasonUnderutilized, claims: claims, move: move, to: "existing nodes", consolidationType: "single"}
		if len(group) > 1 {
			d.consolidationType = "multi"
		}
		if len(move.Plan.NewNodeClaims) == 1 {
			nc := move.Plan.NewNodeClaims[0]
			d.to = nc.NodePool
			if d.saving() <= 0 || spotToSpot(claims, nc) {
				return nil
			}
		}
		return d
	}
	// Multi-node: the largest prefix that consolidates, found by halving.
	var best *Decision
	for lo, hi := 2, len(within); lo <= hi; {
		mid := (lo + hi) / 2
		if d := try(within[:mid]); d != nil {
			best, lo = d, mid+1
		} else {
			hi = mid - 1
		}
	}
	if best != nil {
		return best
	}
	for _, c := range within {
		if d := try([]Candidate{c}); d != nil {
			return d
		}
	}
	return nil
}

// spotToSpot reports a replacement of Spot nodes by a Spot node, which
// consolidation does not make: a cheaper Spot offering is usually a more
// interruptible one, and price-capacity-optimized chose the old one for
// its capacity (Karpenter's default too).
func spotToSpot(claims []*v1.NodeClaim, nc *scheduling.NewNodeClaim) bool {
	for _, c := range claims {
		if c.Labels[v1.CapacityTypeLabelKey] != v1.CapacityTypeSpot {
			return false
		}
	}
	_, o, _ := nc.CheapestOffering()
	return o.CapacityType == v1.CapacityTypeSpot
}

// String says what a decision does, for logs and benchmarks: "multi:
// delete 100 nodes, 1000 pods move, saves $19.200/h".
func (d *Decision) String() string {
	what := fmt.Sprintf("delete %d nodes", len(d.claims))
	if n := len(d.move.Plan.NewNodeClaims); n > 0 {
		what = fmt.Sprintf("replace %d nodes by %s", len(d.claims), provisioning.DescribeClaim(d.move.Plan.NewNodeClaims[0]))
	}
	return fmt.Sprintf("%s: %s, %d pods move, saves $%.3f/h", d.consolidationType, what, d.move.Pods, d.saving())
}
