package disruption

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/controllers/metrics"
	"github.com/backstop-sh/backstop/pkg/controllers/provisioning"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

// Annotations of a return, all in Backstop's own domain so Karpenter's
// manifests stay valid.
const (
	// ReturnAnnotation on a NodePool: "false" keeps returns away from it,
	// as the pool nodes return from and as the pool they return to; "true"
	// on a fallback pool lets its nodes return to any pool of higher weight,
	// not only to one that differs from it by capacity type alone.
	ReturnAnnotation = "backstop.sh/return-to-preferred-pool"
	// ReturningAnnotation on a NodeClaim names the pools its replacements
	// come from while it is being returned.
	ReturningAnnotation = "backstop.sh/returning-to"
	// ReplacementsAnnotation on a returning NodeClaim is how many
	// replacements were created for it.
	ReplacementsAnnotation = "backstop.sh/replacements"
	// ReturnStartedAnnotation on a NodeClaim is when its last return began
	// (RFC 3339); it stays after a rollback, so the next try waits.
	ReturnStartedAnnotation = "backstop.sh/return-started"
	// ReturnRolledBackAnnotation on a NodeClaim is when its last return was
	// rolled back (RFC 3339); the next try waits the cool-down after it.
	ReturnRolledBackAnnotation = "backstop.sh/return-rolled-back"
	// ReplacementForAnnotation on a NodeClaim names the NodeClaim it replaces.
	ReplacementForAnnotation = "backstop.sh/replacement-for"
)

// ReturnOptions shape returns to the preferred pool.
type ReturnOptions struct {
	// Enabled turns returns on (for NodePools that differ only by weight and
	// capacity type, unless a pool's ReturnAnnotation says "false").
	Enabled bool
	// Cooldown is how long after the cloud last refused an offering a
	// return may use it, and how long a node waits after a return of it
	// was rolled back.
	Cooldown time.Duration
	// MaxPerInterval returns may start per Interval, cluster-wide.
	MaxPerInterval int
	Interval       time.Duration
	// MinSaving is the least saving, as a fraction of the node's price, a
	// return must bring.
	MinSaving float64
	// Timeout is how long a return waits for its replacements to initialize
	// before it is rolled back.
	Timeout time.Duration
}

// DefaultReturnOptions are the controller's defaults.
func DefaultReturnOptions() ReturnOptions {
	return ReturnOptions{Enabled: true, Cooldown: 5 * time.Minute, MaxPerInterval: 10, Interval: 5 * time.Minute, MinSaving: 0.1, Timeout: 20 * time.Minute}
}

// Mover is provisioning, as returns need it.
type Mover interface {
	Nominations
	PlanMove(ctx context.Context, req provisioning.MoveRequest) (*provisioning.Move, error)
	CreateReplacement(ctx context.Context, pool *v1.NodePool, nc *scheduling.NewNodeClaim, annotations map[string]string) (*v1.NodeClaim, error)
}

// Returner moves nodes of a fallback NodePool back to the preferred,
// higher-weight pool once that pool can launch again: replacements first,
// the old node drained only when they have initialized, rolled back when
// they fail.
type Returner struct {
	client   client.Client
	recorder events.EventRecorder
	clock    clock.Clock
	mover    Mover
	opts     ReturnOptions
	// Every is how often a round runs.
	Every time.Duration
	// Lifecycle counts disruptions; nil counts nothing.
	Lifecycle *metrics.Lifecycle
	metrics   *ReturnMetrics
}

// NewReturner returns the controller.
func NewReturner(c client.Client, recorder events.EventRecorder, clk clock.Clock, mover Mover, opts ReturnOptions, m *ReturnMetrics) *Returner {
	return &Returner{client: c, recorder: recorder, clock: clk, mover: mover, opts: opts, Every: 10 * time.Second, metrics: m}
}

// ReturnMetrics count returns by what became of them.
type ReturnMetrics struct{ results *prometheus.CounterVec }

// NewReturnMetrics registers the metrics on reg.
func NewReturnMetrics(reg prometheus.Registerer) *ReturnMetrics {
	m := &ReturnMetrics{results: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "backstop_returns_total",
		Help: "Returns of nodes to a preferred NodePool, by from and to pool and result: started, completed, rolled_back.",
	}, []string{"from", "to", "result"})}
	reg.MustRegister(m.results)
	return m
}

func (m *ReturnMetrics) count(from, to, result string) {
	if m != nil {
		m.results.WithLabelValues(from, to, result).Inc()
	}
}

// NeedLeaderElection makes returns run on the leader only.
func (r *Returner) NeedLeaderElection() bool { return true }

// Start runs rounds until ctx ends.
func (r *Returner) Start(ctx context.Context) error {
	for {
		if err := r.Round(ctx); err != nil {
			log.FromContext(ctx).Error(err, "return round failed")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.clock.After(r.Every):
		}
	}
}

// world is what one round reads, from the cache.
type world struct {
	pools  map[string]*v1.NodePool
	claims []*v1.NodeClaim
	byName map[string]*v1.NodeClaim
	nodes  map[string]*corev1.Node
	pods   map[string][]*corev1.Pod
	pdbs   []policyv1.PodDisruptionBudget
}

func (r *Returner) read(ctx context.Context) (*world, error) {
	var pools v1.NodePoolList
	var claims v1.NodeClaimList
	var nodes corev1.NodeList
	var pods corev1.PodList
	var pdbs policyv1.PodDisruptionBudgetList
	for what, list := range map[string]client.ObjectList{"nodepools": &pools, "nodeclaims": &claims, "nodes": &nodes, "pods": &pods, "poddisruptionbudgets": &pdbs} {
		if err := r.client.List(ctx, list); err != nil {
			return nil, fmt.Errorf("listing %s: %w", what, err)
		}
	}
	w := &world{pools: map[string]*v1.NodePool{}, byName: map[string]*v1.NodeClaim{}, nodes: map[string]*corev1.Node{}, pods: map[string][]*corev1.Pod{}, pdbs: pdbs.Items}
	for i := range pools.Items {
		w.pools[pools.Items[i].Name] = &pools.Items[i]
	}
	for i := range claims.Items {
		w.claims = append(w.claims, &claims.Items[i])
		w.byName[claims.Items[i].Name] = &claims.Items[i]
	}
	for i := range nodes.Items {
		w.nodes[nodes.Items[i].Name] = &nodes.Items[i]
	}
	for i := range pods.Items {
		if n := pods.Items[i].Spec.NodeName; n != "" {
			w.pods[n] = append(w.pods[n], &pods.Items[i])
		}
	}
	return w, nil
}

// Round carries returns in progress one step on, then starts new ones.
func (r *Returner) Round(ctx context.Context) error {
	w, err := r.read(ctx)
	if err != nil {
		return err
	}
	for _, claim := range w.claims {
		if claim.Annotations[ReturningAnnotation] != "" && claim.DeletionTimestamp == nil {
			if err := r.progress(ctx, w, claim); err != nil {
				log.FromContext(ctx).Error(err, "carrying a return on", "nodeclaim", claim.Name)
			}
		}
	}
	if !r.opts.Enabled {
		return nil
	}
	return r.startReturns(ctx, w)
}

// replacementsOf are the NodeClaims created to replace claim.
func replacementsOf(w *world, claim string) []*v1.NodeClaim {
	var out []*v1.NodeClaim
	for _, c := range w.claims {
		if c.Annotations[ReplacementForAnnotation] == claim {
			out = append(out, c)
		}
	}
	return out
}

// progress drains a returning node once all its replacements have
// initialized, and rolls the return back when one is gone or they take
// too long.
func (r *Returner) progress(ctx context.Context, w *world, claim *v1.NodeClaim) error {
	want, _ := strconv.Atoi(claim.Annotations[ReplacementsAnnotation])
	started, _ := time.Parse(time.RFC3339, claim.Annotations[ReturnStartedAnnotation])
	replacements := replacementsOf(w, claim.Name)
	from, to := claim.Labels[v1.NodePoolLabelKey], claim.Annotations[ReturningAnnotation]
	live, ready := 0, 0
	var names []string
	for _, c := range replacements {
		if c.DeletionTimestamp != nil {
			continue
		}
		live++
		names = append(names, c.Name)
		if meta.IsStatusConditionTrue(c.Status.Conditions, v1.ConditionInitialized) {
			ready++
		}
	}
	age := r.clock.Since(started)
	switch {
	case ready == want:
		msg := fmt.Sprintf("Returned to nodepool %s: replacement %s initialized, draining this node", to, strings.Join(names, ", "))
		r.event(ctx, w, claim, corev1.EventTypeNormal, "ReturnedToPreferredPool", msg)
		log.FromContext(ctx).Info("returning node to its preferred pool: replacements initialized, draining", "nodeclaim", claim.Name, "node", claim.Status.NodeName, "nodepool", from, "to", to, "replacements", names)
		if err := r.client.Delete(ctx, claim); client.IgnoreNotFound(err) != nil {
			return err
		}
		r.Lifecycle.Disrupted(from, "underutilized", claim.Labels[v1.CapacityTypeLabelKey])
		r.metrics.count(from, to, "completed")
		return nil
	case live < want && age >= replacementGrace:
		return r.rollBack(ctx, w, claim, replacements, fmt.Sprintf("%d of %d replacements failed to launch", want-live, want))
	case age >= r.opts.Timeout:
		return r.rollBack(ctx, w, claim, replacements, fmt.Sprintf("replacements did not initialize within %s", r.opts.Timeout))
	}
	return nil
}

// replacementGrace covers a crash between the return's start and the
// creation of its replacements, and a cache that has not seen them yet.
const replacementGrace = 30 * time.Second

// rollBack deletes a return's replacements and leaves the node where it is.
func (r *Returner) rollBack(ctx context.Context, w *world, claim *v1.NodeClaim, replacements []*v1.NodeClaim, why string) error {
	for _, c := range replacements {
		if c.DeletionTimestamp == nil {
			if err := r.client.Delete(ctx, c); client.IgnoreNotFound(err) != nil {
				return err
			}
		}
	}
	patch := client.MergeFromWithOptions(claim.DeepCopy(), client.MergeFromWithOptimisticLock{})
	delete(claim.Annotations, ReturningAnnotation)
	delete(claim.Annotations, ReplacementsAnnotation)
	claim.Annotations[ReturnRolledBackAnnotation] = r.clock.Now().UTC().Format(time.RFC3339)
	if err := r.client.Patch(ctx, claim, patch); err != nil {
		return client.IgnoreNotFound(err)
	}
	from, to := claim.Labels[v1.NodePoolLabelKey], claimTargets(claim, replacements)
	msg := fmt.Sprintf("Return to the preferred pool rolled back: %s; the node stays, and is tried again after %s", why, r.opts.Cooldown)
	r.event(ctx, w, claim, corev1.EventTypeWarning, "ReturnRolledBack", msg)
	log.FromContext(ctx).Info("return rolled back", "nodeclaim", claim.Name, "nodepool", from, "why", why)
	r.metrics.count(from, to, "rolled_back")
	return nil
}

func claimTargets(claim *v1.NodeClaim, replacements []*v1.NodeClaim) string {
	if to := claim.Annotations[ReturningAnnotation]; to != "" {
		return to
	}
	if len(replacements) > 0 {
		return replacements[0].Labels[v1.NodePoolLabelKey]
	}
	return ""
}

// startReturns looks for fallback nodes whose pods a preferred pool can
// take now, and starts as many returns as budgets and the rate allow.
func (r *Returner) startReturns(ctx context.Context, w *world) error {
	now := r.clock.Now()
	budget := r.opts.MaxPerInterval - r.recentReturns(w, now)
	// Replacements made in this round join those the round started with.
	spoken := spokenFor(w)
	eligible := 0
	defer func() { r.Lifecycle.Eligible("underutilized", eligible) }()
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
		var members []*v1.NodeClaim
		disrupting := 0
		for _, c := range w.claims {
			if c.Labels[v1.NodePoolLabelKey] != from.Name {
				continue
			}
			members = append(members, c)
			if c.DeletionTimestamp != nil || c.Annotations[ReturningAnnotation] != "" {
				disrupting++
			}
		}
		allowed, err := Allowed(from, v1.DisruptionReasonUnderutilized, len(members), now)
		if err != nil {
			log.FromContext(ctx).Error(err, "reading disruption budgets", "nodepool", from.Name)
			continue
		}
		allowed -= disrupting
		// The oldest first: they have waited longest on the fallback.
		sort.Slice(members, func(a, b int) bool { return members[a].CreationTimestamp.Before(&members[b].CreationTimestamp) })
		for _, claim := range members {
			cand := Candidate{Claim: claim, Node: w.nodes[claim.Status.NodeName], Pods: w.pods[claim.Status.NodeName]}
			if why := WhyNot(cand, w.pdbs); why != nil {
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
			started, err := r.tryReturn(ctx, w, cand, to, strings.Join(toNames, ","), spoken)
			if err != nil {
				var refusal *provisioning.MoveRefusal
				if errors.As(err, &refusal) && refusal.Reason == "pods_pending" {
					return nil
				}
				if !errors.As(err, &refusal) {
					return err
				}
				log.FromContext(ctx).V(1).Info("not returning node", "nodeclaim", claim.Name, "why", err.Error())
				continue
			}
			if started {
				allowed--
				budget--
			}
		}
	}
	return nil
}

// coolingDown reports whether a return of the claim began or was rolled
// back within the cool-down.
func (r *Returner) coolingDown(claim *v1.NodeClaim, now time.Time) bool {
	for _, key := range []string{ReturnStartedAnnotation, ReturnRolledBackAnnotation} {
		if at, err := time.Parse(time.RFC3339, claim.Annotations[key]); err == nil && now.Sub(at) < r.opts.Cooldown {
			return true
		}
	}
	return false
}

// recentReturns counts the nodes whose return started within the interval,
// rolled back or completed: the rate limit survives restarts, because it is
// read from the NodeClaims (a completed return's from its replacements,
// which carry its start).
func (r *Returner) recentReturns(w *world, now time.Time) int {
	seen := map[string]bool{}
	for _, c := range w.claims {
		at, err := time.Parse(time.RFC3339, c.Annotations[ReturnStartedAnnotation])
		if err != nil || now.Sub(at) >= r.opts.Interval {
			continue
		}
		if of := c.Annotations[ReplacementForAnnotation]; of != "" {
			seen[of] = true
		} else {
			seen[c.Name] = true
		}
	}
	return len(seen)
}

// tryReturn plans the candidate's pods onto the preferred pools and, when
// they all fit there and the saving is worth it, starts the return.
func (r *Returner) tryReturn(ctx context.Context, w *world, cand Candidate, to map[string]bool, toNames string, spoken map[string]bool) (bool, error) {
	now := r.clock.Now()
	move, err := r.mover.PlanMove(ctx, provisioning.MoveRequest{Nodes: []string{cand.Claim.Status.NodeName}, To: to, Exclude: spoken,
		Usable: func(o scheduling.Offering) bool {
			return o.LastUnavailable.IsZero() || now.Sub(o.LastUnavailable) >= r.opts.Cooldown
		}})
	if err != nil {
		return false, err
	}
	newPrice := move.Plan.Price()
	saving := move.LeavingPrice - newPrice
	if move.LeavingPrice <= 0 || saving < r.opts.MinSaving*move.LeavingPrice {
		log.FromContext(ctx).V(1).Info("not returning node: saving too small", "nodeclaim", cand.Claim.Name, "price", move.LeavingPrice, "new-price", newPrice)
		return false, nil
	}
	claim := cand.Claim
	from := claim.Labels[v1.NodePoolLabelKey]
	patch := client.MergeFromWithOptions(claim.DeepCopy(), client.MergeFromWithOptimisticLock{})
	if claim.Annotations == nil {
		claim.Annotations = map[string]string{}
	}
	claim.Annotations[ReturningAnnotation] = toNames
	claim.Annotations[ReplacementsAnnotation] = strconv.Itoa(len(move.Plan.NewNodeClaims))
	claim.Annotations[ReturnStartedAnnotation] = now.UTC().Format(time.RFC3339)
	// Recorded before the replacements exist: a crash after this line is
	// rolled back by the next round, never doubled.
	if err := r.client.Patch(ctx, claim, patch); err != nil {
		return false, client.IgnoreNotFound(err)
	}
	var what []string
	for _, nc := range move.Plan.NewNodeClaims {
		created, err := r.mover.CreateReplacement(ctx, move.Pools[nc.NodePool], nc, map[string]string{
			ReplacementForAnnotation: claim.Name, ReturnStartedAnnotation: claim.Annotations[ReturnStartedAnnotation]})
		if err != nil {
			// The next round sees fewer replacements than recorded and rolls back.
			return true, fmt.Errorf("creating a replacement for nodeclaim %s: %w", claim.Name, err)
		}
		spoken[created.Name] = true
		what = append(what, fmt.Sprintf("%s (nodeclaim %s)", provisioning.DescribeClaim(nc), created.Name))
	}
	if len(move.Plan.NewNodeClaims) == 0 {
		what = append(what, "room on existing nodes")
	}
	msg := fmt.Sprintf("Returning to nodepool %s: replaced by %s, saves $%.3f/h; this node drains once the replacement has initialized",
		toNames, strings.Join(what, ", "), saving)
	r.event(ctx, w, claim, corev1.EventTypeNormal, "ReturnToPreferredPool", msg)
	log.FromContext(ctx).Info("returning node to its preferred pool", "nodeclaim", claim.Name, "node", claim.Status.NodeName,
		"nodepool", from, "to", toNames, "pods", move.Pods, "price", move.LeavingPrice, "new-price", newPrice)
	r.Lifecycle.Decided(decisionFor(move), "underutilized", "return")
	r.metrics.count(from, toNames, "started")
	return true, nil
}

// spokenFor are the replacements, as nodes and NodeClaims, of NodeClaims
// still there: their room waits for those NodeClaims' pods.
func spokenFor(w *world) map[string]bool {
	out := map[string]bool{}
	for _, c := range w.claims {
		if of := c.Annotations[ReplacementForAnnotation]; of != "" && w.byName[of] != nil {
			out[c.Name] = true
			if c.Status.NodeName != "" {
				out[c.Status.NodeName] = true
			}
		}
	}
	return out
}

func decisionFor(m *provisioning.Move) string {
	if len(m.Plan.NewNodeClaims) == 0 {
		return "delete"
	}
	return "replace"
}

// event records on the NodeClaim, its Node and its NodePool.
func (r *Returner) event(_ context.Context, w *world, claim *v1.NodeClaim, kind, reason, msg string) {
	r.recorder.Eventf(claim, nil, kind, reason, "Return", "%s", msg)
	if n := w.nodes[claim.Status.NodeName]; n != nil {
		r.recorder.Eventf(n, claim, kind, reason, "Return", "%s", msg)
	}
	if p := w.pools[claim.Labels[v1.NodePoolLabelKey]]; p != nil {
		r.recorder.Eventf(p, claim, kind, reason, "Return", "nodeclaim %s: %s", claim.Name, msg)
	}
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
