package disruption

import (
	"context"
	"errors"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider"
	"github.com/backstop-sh/backstop/pkg/controllers/provisioning"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

// Drift reasons of the NodePool's making; the cloud adds its own.
const (
	// NodePoolDrift: the NodePool's template changed since the NodeClaim
	// was created (requirements aside).
	NodePoolDrift cloudprovider.DriftReason = "NodePoolDrift"
	// RequirementsDrift: the NodeClaim's labels no longer meet the
	// NodePool's requirements.
	RequirementsDrift cloudprovider.DriftReason = "RequirementsDrift"
)

// DriftChecker is the cloud, as drift needs it.
type DriftChecker interface {
	IsDrifted(ctx context.Context, claim *v1.NodeClaim) (cloudprovider.DriftReason, error)
}

// PoolDrift says why a NodeClaim no longer matches its NodePool, or "".
// A hash stamped by another version (Karpenter's, say) is not compared.
func PoolDrift(pool *v1.NodePool, claim *v1.NodeClaim) cloudprovider.DriftReason {
	return newPoolView(pool).drift(claim)
}

// poolView is what drift compares a pool's NodeClaims with, computed once
// per pool and round rather than once per NodeClaim.
type poolView struct {
	hash string
	reqs scheduling.Requirements
}

func newPoolView(pool *v1.NodePool) poolView {
	reqs, err := scheduling.FromAPI(pool.Spec.Template.Spec.Requirements)
	if err != nil {
		// The CRD's validation refuses such requirements; compare none.
		reqs = scheduling.Requirements{}
	}
	return poolView{hash: pool.TemplateHash(), reqs: reqs}
}

func (p poolView) drift(claim *v1.NodeClaim) cloudprovider.DriftReason {
	if claim.Annotations[v1.NodePoolHashVersionAnnotationKey] == v1.NodePoolHashVersion &&
		claim.Annotations[v1.NodePoolHashAnnotationKey] != p.hash {
		return NodePoolDrift
	}
	for _, key := range p.reqs.Keys() {
		value, set := claim.Labels[key]
		if !p.reqs[key].Matches(value, set) {
			return RequirementsDrift
		}
	}
	return ""
}

// drifted finds each launched NodeClaim's drift, records it in the
// NodeClaim's Drifted condition (this controller is its one writer), and
// returns the drifted ones by name with why.
func (r *Replacer) drifted(ctx context.Context, w *world) map[string]cloudprovider.DriftReason {
	out := map[string]cloudprovider.DriftReason{}
	views := map[string]poolView{}
	for _, claim := range w.claims {
		pool := w.pools[claim.Labels[v1.NodePoolLabelKey]]
		if pool == nil {
			pool = w.static[claim.Labels[v1.NodePoolLabelKey]]
		}
		if claim.DeletionTimestamp != nil || claim.Status.ProviderID == "" || pool == nil {
			continue
		}
		view, ok := views[pool.Name]
		if !ok {
			view = newPoolView(pool)
			views[pool.Name] = view
		}
		reason := view.drift(claim)
		if reason == "" && r.Cloud != nil {
			var err error
			if reason, err = r.Cloud.IsDrifted(ctx, claim); err != nil {
				log.FromContext(ctx).Error(err, "checking drift", "nodeclaim", claim.Name)
				continue
			}
		}
		if reason != "" {
			out[claim.Name] = reason
		}
		if err := r.recordDrift(ctx, claim, reason); err != nil {
			log.FromContext(ctx).Error(err, "recording drift", "nodeclaim", claim.Name)
		}
	}
	return out
}

func (r *Replacer) recordDrift(ctx context.Context, claim *v1.NodeClaim, reason cloudprovider.DriftReason) error {
	current := meta.FindStatusCondition(claim.Status.Conditions, v1.ConditionDrifted)
	if reason == "" {
		if current == nil {
			return nil
		}
		patch := client.MergeFromWithOptions(claim.DeepCopy(), client.MergeFromWithOptimisticLock{})
		meta.RemoveStatusCondition(&claim.Status.Conditions, v1.ConditionDrifted)
		return client.IgnoreNotFound(r.client.Status().Patch(ctx, claim, patch))
	}
	if current != nil && current.Status == metav1.ConditionTrue && current.Reason == string(reason) {
		return nil
	}
	patch := client.MergeFromWithOptions(claim.DeepCopy(), client.MergeFromWithOptimisticLock{})
	meta.SetStatusCondition(&claim.Status.Conditions, metav1.Condition{Type: v1.ConditionDrifted, Status: metav1.ConditionTrue,
		Reason: string(reason), Message: driftMessages[reason], ObservedGeneration: claim.Generation, LastTransitionTime: metav1.NewTime(r.clock.Now())})
	return client.IgnoreNotFound(r.client.Status().Patch(ctx, claim, patch))
}

var driftMessages = map[cloudprovider.DriftReason]string{
	NodePoolDrift:                    "the NodePool's template changed since this node was created",
	RequirementsDrift:                "the node's labels no longer meet its NodePool's requirements",
	cloudprovider.NodeClassDrift:     "the NodeClass changed since this node was launched",
	cloudprovider.AMIDrift:           "the node's image is no longer one the NodeClass resolves to",
	cloudprovider.SubnetDrift:        "the node's subnet is no longer one the NodeClass resolves to",
	cloudprovider.SecurityGroupDrift: "the node's security groups are no longer those the NodeClass resolves to",
}

// replaceDrifted replaces drifted nodes, replacement first, as far as each
// pool's Drifted budget allows; it reports whether it started any.
func (r *Replacer) replaceDrifted(ctx context.Context, w *world, drifted map[string]cloudprovider.DriftReason, spoken map[string]bool) (bool, error) {
	if len(drifted) == 0 {
		return false, nil
	}
	now := r.clock.Now()
	to := map[string]bool{}
	for name := range w.pools {
		to[name] = true
	}
	var base *provisioning.MoveBase
	started := false
	for _, pool := range sortedPools(w.pools) {
		members := w.members(pool)
		var cands []*v1.NodeClaim
		for _, c := range members.idle {
			if drifted[c.Name] != "" {
				cands = append(cands, c)
			}
		}
		if len(cands) == 0 {
			continue
		}
		allowed := members.allowed(ctx, v1.DisruptionReasonDrifted, now)
		for _, claim := range cands {
			if allowed <= 0 {
				break
			}
			cand := Candidate{Claim: claim, Node: w.nodes[claim.Status.NodeName], Pods: w.pods[claim.Status.NodeName]}
			if why := r.whyNot(w, cand, now); why != nil || r.coolingDown(claim, now) {
				continue
			}
			if base == nil {
				var err error
				if base, err = r.mover.MoveBase(ctx); err != nil {
					if errors.As(err, new(*provisioning.MoveRefusal)) {
						return started, nil
					}
					return started, err
				}
			}
			move, err := base.Plan(provisioning.MoveRequest{Nodes: []string{claim.Status.NodeName}, To: to, AnyNode: true, Exclude: spoken})
			if err != nil {
				log.FromContext(ctx).V(1).Info("not replacing drifted node yet", "nodeclaim", claim.Name, "why", err.Error())
				continue
			}
			d := &Decision{reason: ReasonDrifted, detail: string(drifted[claim.Name]), claims: []*v1.NodeClaim{claim}, move: move, to: "existing nodes"}
			if len(move.Plan.NewNodeClaims) > 0 {
				d.to = move.Plan.NewNodeClaims[0].NodePool
			}
			if err := r.begin(ctx, w, d, spoken); err != nil {
				return true, err
			}
			started = true
			allowed--
		}
	}
	return started, nil
}
