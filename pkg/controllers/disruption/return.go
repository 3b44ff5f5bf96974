package disruption

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/controllers/provisioning"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

// ReturnAnnotation on a NodePool: "false" keeps returns away from it, as
// the pool nodes return from and as the pool they return to; "true" on a
// fallback pool lets its nodes return to any pool of higher weight, not
// only to one that differs from it by capacity type alone. In Backstop's
// own domain, so Karpenter's manifests stay valid.
const ReturnAnnotation = "backstop.sh/return-to-preferred-pool"

// startReturns looks for fallback nodes whose pods a preferred pool can
// take now, and starts as many returns as budgets and the rate allow.
func (r *Replacer) startReturns(ctx context.Context, w *world) (bool, error) {
	now := r.clock.Now()
	budget := r.opts.MaxPerInterval - r.recentReturns(w, now)
	started := false
	var base *provisioning.MoveBase
	fp := fingerprint(w, &r.stable)
	// Replacements made in this round join those the round started with.
	spoken := spokenFor(w)
	eligible := 0
	defer func() { r.returnEligible = eligible }()
	for _, from := range sortedPools(w.pools) {
		preferred := PreferredPools(from, w.pools)
		if len(preferred) == 0 {
			continue
		}
		to := map[string]bool{}
		var toNames []string
		for _, p := range preferred {
			to[p.Name] = true
			toNames = append(toNames, p.Name)
		}
		members := w.members(from)
		allowed := members.allowed(ctx, v1.DisruptionReasonUnderutilized, now)
		// The oldest first: they have waited longest on the fallback.
		for _, claim := range members.idle {
			cand := Candidate{Claim: claim, Node: w.nodes[claim.Status.NodeName], Pods: w.pods[claim.Status.NodeName]}
			if why := r.whyNot(w, cand, now); why != nil {
				log.FromContext(ctx).V(1).Info("not returning node", "nodeclaim", claim.Name, "why", why.String())
				continue
			}
			if r.coolingDown(claim, now) || r.mover.Nominated(ctx, claim.Name) {
				continue
			}
			eligible++
			if allowed <= 0 || budget <= 0 {
				continue
			}
			if base == nil {
				if r.noReturn.skip(fp, now) {
					return false, nil
				}
				var err error
				if base, err = r.mover.MoveBase(ctx); err != nil {
					if errors.As(err, new(*provisioning.MoveRefusal)) {
						log.FromContext(ctx).V(1).Info("no returns now", "why", err.Error())
						return false, nil
					}
					return false, err
				}
			}
			d, err := r.planReturn(base, cand, to, strings.Join(toNames, ","), spoken)
			if err != nil {
				if !errors.As(err, new(*provisioning.MoveRefusal)) {
					return started, err
				}
				log.FromContext(ctx).V(1).Info("not returning node", "nodeclaim", claim.Name, "why", err.Error())
				continue
			}
			if err := r.begin(ctx, w, d, spoken); err != nil {
				return true, err
			}
			started = true
			allowed--
			budget--
		}
	}
	if base != nil && !started {
		// Returns were weighed and none was possible: not again on the
		// same cluster for a while.
		r.noReturn.record(fp, now)
	}
	return started, nil
}

// recentReturns counts the nodes whose return started within the interval,
// rolled back or completed: the rate limit survives restarts, because it is
// read from the NodeClaims (a completed return's from its replacements,
// which carry its start).
func (r *Replacer) recentReturns(w *world, now time.Time) int {
	seen := map[string]bool{}
	for _, c := range w.claims {
		at, err := time.Parse(time.RFC3339, c.Annotations[StartedAnnotation])
		if err != nil || now.Sub(at) >= r.opts.Interval || c.Annotations[ReasonAnnotation] != ReasonReturn {
			continue
		}
		if of := replaces(c); len(of) > 0 {
			for _, name := range of {
				seen[name] = true
			}
		} else {
			seen[c.Name] = true
		}
	}
	return len(seen)
}

// planReturn plans the candidate's pods onto the preferred pools with
// offerings not refused within the cool-down; a MoveRefusal when they do
// not all fit there or the saving is too small.
func (r *Replacer) planReturn(base *provisioning.MoveBase, cand Candidate, to map[string]bool, toNames string, spoken map[string]bool) (*Decision, error) {
	now := r.clock.Now()
	move, err := base.Plan(provisioning.MoveRequest{Nodes: []string{cand.Claim.Status.NodeName}, To: to, Exclude: spoken,
		Usable: func(o scheduling.Offering) bool {
			return o.LastUnavailable.IsZero() || now.Sub(o.LastUnavailable) >= r.opts.Cooldown
		}})
	if err != nil {
		return nil, err
	}
	d := &Decision{reason: ReasonReturn, claims: []*v1.NodeClaim{cand.Claim}, move: move, to: toNames, consolidationType: "return"}
	if move.LeavingPrice <= 0 || d.saving() < r.opts.MinSaving*move.LeavingPrice {
		return nil, &provisioning.MoveRefusal{Reason: "saving", Message: fmt.Sprintf("saves $%.4f/h of $%.4f/h, less than %.0f%%", d.saving(), move.LeavingPrice, 100*r.opts.MinSaving)}
	}
	return d, nil
}

func sortedPools(pools map[string]*v1.NodePool) []*v1.NodePool {
	out := make([]*v1.NodePool, 0, len(pools))
	for _, p := range pools {
		out = append(out, p)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out
}

// PreferredPools are the pools a node of from returns to: those of higher
// weight that differ from it only by weight and capacity type (any of
// higher weight when from opts in), when neither pool turns returns off.
func PreferredPools(from *v1.NodePool, pools map[string]*v1.NodePool) []*v1.NodePool {
	if from.Annotations[ReturnAnnotation] == "false" || from.DeletionTimestamp != nil {
		return nil
	}
	var out []*v1.NodePool
	for _, p := range sortedPools(pools) {
		if p.Name == from.Name || p.DeletionTimestamp != nil || p.Annotations[ReturnAnnotation] == "false" {
			continue
		}
		if weight(p) > weight(from) && (from.Annotations[ReturnAnnotation] == "true" || Siblings(p, from)) {
			out = append(out, p)
		}
	}
	return out
}

func weight(p *v1.NodePool) int32 {
	if p.Spec.Weight == nil {
		return 0
	}
	return *p.Spec.Weight
}

// Siblings reports whether two pools make the same nodes but for their
// capacity type: same NodeClass, labels, taints and requirements once the
// capacity-type requirement is set aside.
func Siblings(a, b *v1.NodePool) bool {
	ta, tb := a.Spec.Template, b.Spec.Template
	return equality.Semantic.DeepEqual(ta.Spec.NodeClassRef, tb.Spec.NodeClassRef) &&
		equality.Semantic.DeepEqual(ta.ObjectMeta.Labels, tb.ObjectMeta.Labels) &&
		equality.Semantic.DeepEqual(ta.Spec.Taints, tb.Spec.Taints) &&
		equality.Semantic.DeepEqual(ta.Spec.StartupTaints, tb.Spec.StartupTaints) &&
		equality.Semantic.DeepEqual(withoutCapacityType(ta.Spec.Requirements), withoutCapacityType(tb.Spec.Requirements))
}

func withoutCapacityType(reqs []v1.NodeSelectorRequirementWithMinValues) []v1.NodeSelectorRequirementWithMinValues {
	var out []v1.NodeSelectorRequirementWithMinValues
	for _, r := range reqs {
		if r.Key != v1.CapacityTypeLabelKey {
			out = append(out, r)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}
