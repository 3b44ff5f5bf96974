package disruption

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider"
	"github.com/backstop-sh/backstop/pkg/controllers/metrics"
	"github.com/backstop-sh/backstop/pkg/controllers/provisioning"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

// Annotations of a replacement in progress, all in Backstop's own domain so
// Karpenter's manifests stay valid. The state of every replacement lives in
// them, so a restarted controller carries it on and doubles nothing.
const (
	// ReplacingAnnotation on a NodeClaim says where its pods go while it is
	// being replaced: the pools of its replacements, or existing nodes.
	ReplacingAnnotation = v1.ReplacingAnnotation
	// ReasonAnnotation on a NodeClaim being replaced, and on its
	// replacements, says why: return or underutilized.
	ReasonAnnotation = "backstop.sh/replacing-reason"
	// ReplacementsAnnotation on a NodeClaim being replaced is how many
	// replacements were created for it.
	ReplacementsAnnotation = "backstop.sh/replacements"
	// StartedAnnotation on a NodeClaim is when its last replacement began
	// (RFC 3339, on the controller's clock); it stays after a rollback, so
	// the next try waits. Replacements carry the start of what they replace.
	StartedAnnotation = "backstop.sh/replacement-started"
	// RolledBackAnnotation on a NodeClaim is when its last replacement was
	// rolled back (RFC 3339); the next try waits the cool-down after it.
	RolledBackAnnotation = "backstop.sh/replacement-rolled-back"
	// ReplacementForAnnotation on a NodeClaim names the NodeClaims it
	// replaces, comma-separated.
	ReplacementForAnnotation = "backstop.sh/replacement-for"
)

// Reasons a replacement is made for: the values of ReasonAnnotation.
const (
	ReasonReturn        = "return"
	ReasonUnderutilized = "underutilized"
	ReasonDrifted       = "drifted"
)

// metricReason is the reason label of Karpenter's disruption metrics: a
// return is a kind of consolidation.
func metricReason(reason string) string {
	if reason == ReasonDrifted {
		return ReasonDrifted
	}
	return ReasonUnderutilized
}

// budgetReason is the reason of Karpenter's API a replacement of one reason
// goes under (its budgets, the NodeClaim's DisruptionReason): a return is a
// consolidation.
func budgetReason(reason string) v1.DisruptionReason {
	if reason == ReasonDrifted {
		return v1.DisruptionReasonDrifted
	}
	return v1.DisruptionReasonUnderutilized
}

// wording is what events say of a replacement of one reason.
type wording struct{ starting, done, rolledBack, label string }

var wordings = map[string]wording{
	ReasonReturn:        {starting: "ReturnToPreferredPool", done: "ReturnedToPreferredPool", rolledBack: "ReturnRolledBack", label: "Return to the preferred pool"},
	ReasonUnderutilized: {starting: "Underutilized", done: "Consolidated", rolledBack: "ConsolidationRolledBack", label: "Consolidation"},
	ReasonDrifted:       {starting: "Drifted", done: "DriftReplaced", rolledBack: "DriftReplacementRolledBack", label: "Drift replacement"},
}

// ReturnOptions shape replacements: returns to the preferred pool, and what
// consolidation shares with them (cool-down, timeout).
type ReturnOptions struct {
	// Enabled turns returns on (for NodePools that differ only by weight and
	// capacity type, unless a pool's ReturnAnnotation says "false").
	Enabled bool
	// Cooldown is how long after the cloud last refused an offering a
	// return may use it, and how long a node waits after a replacement of
	// it was rolled back.
	Cooldown time.Duration
	// MaxPerInterval returns may start per Interval, cluster-wide.
	MaxPerInterval int
	Interval       time.Duration
	// MinSaving is the least saving, as a fraction of the node's price, a
	// return must bring.
	MinSaving float64
	// Timeout is how long a replacement waits for its new NodeClaims to
	// initialize before it is rolled back.
	Timeout time.Duration
}

// DefaultReturnOptions are the controller's defaults.
func DefaultReturnOptions() ReturnOptions {
	return ReturnOptions{Enabled: true, Cooldown: 5 * time.Minute, MaxPerInterval: 10, Interval: 5 * time.Minute, MinSaving: 0.1, Timeout: 20 * time.Minute}
}

// Mover is provisioning, as replacements need it.
type Mover interface {
	Nominations
	MoveBase(ctx context.Context) (*provisioning.MoveBase, error)
	CreateReplacement(ctx context.Context, pool *v1.NodePool, nc *scheduling.NewNodeClaim, annotations map[string]string) (*v1.NodeClaim, error)
}

// Replacer disrupts nodes replacement first: it moves nodes of a fallback
// NodePool back to the preferred pool once that pool can launch again, and
// consolidates underused nodes (deletes them, or replaces them with
// cheaper ones). The new NodeClaims are launched first; the old nodes are
// drained only once those have initialized, and the decision is rolled
// back when they fail.
type Replacer struct {
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
	// stable tracks since when each node has kept the same pods.
	stable stability
	// Cloud, when set, says whether NodeClaims drifted from their NodeClass.
	Cloud DriftChecker
	// returnEligible and consolidationEligible are how many nodes the
	// last round could return and consolidate.
	returnEligible, consolidationEligible int
	// noConsolidation and noReturn remember the last cluster a search
	// found nothing on.
	noConsolidation, noReturn fruitless
	// told is what events said of blocked nodes and bad annotations.
	told notices
}

// NewReplacer returns the controller.
func NewReplacer(c client.Client, recorder events.EventRecorder, clk clock.Clock, mover Mover, opts ReturnOptions, m *ReturnMetrics) *Replacer {
	return &Replacer{client: c, recorder: recorder, clock: clk, mover: mover, opts: opts, Every: 10 * time.Second, metrics: m, stable: stability{since: map[string]podSet{}}}
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

func (m *ReturnMetrics) count(reason, from, to, result string) {
	if m != nil && reason == ReasonReturn {
		m.results.WithLabelValues(from, to, result).Inc()
	}
}

// NeedLeaderElection makes replacements run on the leader only.
func (r *Replacer) NeedLeaderElection() bool { return true }

// Start runs rounds until ctx ends.
func (r *Replacer) Start(ctx context.Context) error {
	return rounds(ctx, r.clock, r.Every, "replacement", r.Round)
}

// world is what one round reads, from the cache.
type world struct {
	pools map[string]*v1.NodePool
	// static are the static pools, apart: disruption takes none of their
	// nodes and moves no pod to them; their drift is recorded only.
	static map[string]*v1.NodePool
	claims []*v1.NodeClaim
	byName map[string]*v1.NodeClaim
	nodes  map[string]*corev1.Node
	pods   map[string][]*corev1.Pod
	pdbs   []policyv1.PodDisruptionBudget
}

// poolMembers are a NodePool's NodeClaims: those free to disrupt, and how
// many there are in all and already being disrupted (deleting or being
// replaced), which its budgets count.
type poolMembers struct {
	pool       *v1.NodePool
	idle       []*v1.NodeClaim
	total      int
	disrupting int
}

// members sorts the world's NodeClaims of a pool, the oldest first.
func (w *world) members(pool *v1.NodePool) poolMembers {
	m := poolMembers{pool: pool}
	for _, c := range w.claims {
		if c.Labels[v1.NodePoolLabelKey] != pool.Name {
			continue
		}
		m.total++
		if c.DeletionTimestamp != nil || c.Annotations[ReplacingAnnotation] != "" {
			m.disrupting++
			continue
		}
		m.idle = append(m.idle, c)
	}
	sort.SliceStable(m.idle, func(a, b int) bool { return m.idle[a].CreationTimestamp.Before(&m.idle[b].CreationTimestamp) })
	return m
}

// allowed is how many more of the pool's nodes the budgets for reason let
// be disrupted now; none, logged, when they cannot be read.
func (m poolMembers) allowed(ctx context.Context, reason v1.DisruptionReason, now time.Time) int {
	n, err := Allowed(m.pool, reason, m.total, now)
	if err != nil {
		log.FromContext(ctx).Error(err, "reading disruption budgets", "nodepool", m.pool.Name)
		return 0
	}
	return n - m.disrupting
}

func (r *Replacer) read(ctx context.Context) (*world, error) {
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
	w := &world{pools: map[string]*v1.NodePool{}, static: map[string]*v1.NodePool{}, byName: map[string]*v1.NodeClaim{}, nodes: map[string]*corev1.Node{}, pods: map[string][]*corev1.Pod{}, pdbs: pdbs.Items}
	for i := range pools.Items {
		if pools.Items[i].Static() {
			// A static pool's nodes are kept whatever their pods, and
			// nothing moves to it: its drift is recorded here, and the
			// static controller replaces its drifted nodes.
			w.static[pools.Items[i].Name] = &pools.Items[i]
			continue
		}
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

// Round carries replacements in progress one step on, then starts returns
// and, when none started, one consolidation.
func (r *Replacer) Round(ctx context.Context) error {
	w, err := r.read(ctx)
	if err != nil {
		return err
	}
	inProgress, drained := false, false
	for _, claim := range w.claims {
		if claim.Annotations[ReplacingAnnotation] != "" && claim.DeletionTimestamp == nil {
			inProgress = true
			// One node drains per round: its evictions settle before the
			// next node's begin, which keeps PodDisruptionBudgets' status
			// current between them.
			done, err := r.progress(ctx, w, claim, !drained)
			if err != nil {
				log.FromContext(ctx).Error(err, "carrying a replacement on", "nodeclaim", claim.Name)
			}
			drained = drained || done
		}
	}
	if drained {
		// Pods are about to leave the drained nodes; the cache shows that
		// only later, and no move may count on the room they will take.
		return nil
	}
	r.stable.observe(w, r.clock.Now())
	r.keepNotices(w)
	r.consolidationEligible = 0
	drifted := r.drifted(ctx, w)
	defer func() {
		r.Lifecycle.Eligible(ReasonUnderutilized, r.returnEligible+r.consolidationEligible)
		r.Lifecycle.Eligible(ReasonDrifted, len(drifted))
	}()
	started, err := r.replaceDrifted(ctx, w, drifted, spokenFor(w))
	if err != nil {
		return err
	}
	if r.opts.Enabled && !started {
		if started, err = r.startReturns(ctx, w); err != nil {
			return err
		}
	}
	if started || inProgress {
		// One consolidation at a time, on a settled cluster.
		return nil
	}
	return r.consolidate(ctx, w)
}

// replaces lists the NodeClaims a replacement is for.
func replaces(c *v1.NodeClaim) []string {
	if of := c.Annotations[ReplacementForAnnotation]; of != "" {
		return strings.Split(of, ",")
	}
	return nil
}

// replacementsOf are the NodeClaims created to replace claim.
func replacementsOf(w *world, claim string) []*v1.NodeClaim {
	var out []*v1.NodeClaim
	for _, c := range w.claims {
		for _, of := range replaces(c) {
			if of == claim {
				out = append(out, c)
			}
		}
	}
	return out
}

// progress drains a node being replaced once all its replacements have
// initialized, and rolls the replacement back when one is gone or they
// take too long.
func (r *Replacer) progress(ctx context.Context, w *world, claim *v1.NodeClaim, mayDrain bool) (drained bool, err error) {
	want, _ := strconv.Atoi(claim.Annotations[ReplacementsAnnotation])
	started, _ := time.Parse(time.RFC3339, claim.Annotations[StartedAnnotation])
	reason := claim.Annotations[ReasonAnnotation]
	words := wordings[reason]
	replacements := replacementsOf(w, claim.Name)
	from, to := claim.Labels[v1.NodePoolLabelKey], claim.Annotations[ReplacingAnnotation]
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
	case ready == want && !mayDrain:
		r.keepTainted(ctx, w, claim)
		return false, nil
	case ready == want:
		msg := fmt.Sprintf("Consolidated: replacement %s initialized, draining this node", strings.Join(names, ", "))
		switch {
		case reason == ReasonDrifted && want == 0:
			msg = "Drifted node replaced: its pods fit on other nodes, draining this node"
		case reason == ReasonDrifted:
			msg = fmt.Sprintf("Drifted node replaced: %s initialized, draining this node", strings.Join(names, ", "))
		case reason == ReasonReturn:
			msg = fmt.Sprintf("Returned to nodepool %s: replacement %s initialized, draining this node", to, strings.Join(names, ", "))
		case want == 0:
			msg = "Consolidated: its pods fit on other nodes, draining this node"
		}
		if err := MarkDisrupted(ctx, r.client, claim, string(budgetReason(reason)), msg, r.clock.Now()); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		r.event(w, claim, corev1.EventTypeNormal, words.done, msg)
		log.FromContext(ctx).Info("replacements initialized, draining", "reason", reason, "nodeclaim", claim.Name, "node", claim.Status.NodeName, "nodepool", from, "to", to, "replacements", names)
		if err := r.client.Delete(ctx, claim); client.IgnoreNotFound(err) != nil {
			return false, err
		}
		r.Lifecycle.Disrupted(from, metricReason(reason), claim.Labels[v1.CapacityTypeLabelKey])
		r.metrics.count(reason, from, to, "completed")
		return true, nil
	case live < want && age >= replacementGrace:
		return false, r.rollBack(ctx, w, claim, replacements, fmt.Sprintf("%d of %d replacements failed to launch", want-live, want))
	case age >= r.opts.Timeout:
		return false, r.rollBack(ctx, w, claim, replacements, fmt.Sprintf("replacements did not initialize within %s", r.opts.Timeout))
	}
	r.keepTainted(ctx, w, claim)
	return false, nil
}

// keepTainted mends the taint of a node whose replacement goes on: a crash
// between its start and the taint left it out, or a write conflicted.
func (r *Replacer) keepTainted(ctx context.Context, w *world, claim *v1.NodeClaim) {
	if err := r.taint(ctx, w, claim, true); err != nil {
		log.FromContext(ctx).Error(err, "tainting a node being replaced; tried again next round", "nodeclaim", claim.Name, "node", claim.Status.NodeName)
	}
}

// replacementGrace covers a crash between a replacement's start and the
// creation of its NodeClaims, and a cache that has not seen them yet.
const replacementGrace = 30 * time.Second

// rollBack deletes a replacement's NodeClaims and leaves the node where it is.
func (r *Replacer) rollBack(ctx context.Context, w *world, claim *v1.NodeClaim, replacements []*v1.NodeClaim, why string) error {
	for _, c := range replacements {
		if c.DeletionTimestamp == nil {
			if err := r.client.Delete(ctx, c); client.IgnoreNotFound(err) != nil {
				return err
			}
		}
	}
	// The taint goes before the mark: a crash between the two leaves a
	// mark, which the next round rolls back again, never a taint alone.
	if err := r.taint(ctx, w, claim, false); err != nil {
		return fmt.Errorf("untainting node %s: %w", claim.Status.NodeName, err)
	}
	reason, to := claim.Annotations[ReasonAnnotation], claim.Annotations[ReplacingAnnotation]
	patch := client.MergeFromWithOptions(claim.DeepCopy(), client.MergeFromWithOptimisticLock{})
	delete(claim.Annotations, ReplacingAnnotation)
	delete(claim.Annotations, ReplacementsAnnotation)
	claim.Annotations[RolledBackAnnotation] = r.clock.Now().UTC().Format(time.RFC3339)
	if err := r.client.Patch(ctx, claim, patch); err != nil {
		return client.IgnoreNotFound(err)
	}
	from := claim.Labels[v1.NodePoolLabelKey]
	words := wordings[reason]
	msg := fmt.Sprintf("%s rolled back: %s; the node stays, and is tried again after %s", words.label, why, r.opts.Cooldown)
	r.event(w, claim, corev1.EventTypeWarning, words.rolledBack, msg)
	log.FromContext(ctx).Info("replacement rolled back", "reason", reason, "nodeclaim", claim.Name, "nodepool", from, "why", why)
	r.metrics.count(reason, from, to, "rolled_back")
	return nil
}

// taint puts the disrupted taint on the node of a NodeClaim being replaced
// (on), or takes it off when the replacement is rolled back (off) — unless
// the node is leaving anyway: being deleted, or warned of a Spot reclaim.
func (r *Replacer) taint(ctx context.Context, w *world, claim *v1.NodeClaim, on bool) error {
	node := w.nodes[claim.Status.NodeName]
	if node == nil || node.DeletionTimestamp != nil || scheduling.HasTaint(node.Spec.Taints, v1.DisruptedNoScheduleTaint) == on {
		return nil
	}
	if !on && claim.Annotations[v1.InterruptedAnnotation] != "" {
		return nil
	}
	patch := client.MergeFromWithOptions(node.DeepCopy(), client.MergeFromWithOptimisticLock{})
	if on {
		node.Spec.Taints = append(node.Spec.Taints, v1.DisruptedNoScheduleTaint)
	} else {
		kept := node.Spec.Taints[:0:0]
		for _, t := range node.Spec.Taints {
			if !t.MatchTaint(&v1.DisruptedNoScheduleTaint) {
				kept = append(kept, t)
			}
		}
		node.Spec.Taints = kept
	}
	return client.IgnoreNotFound(r.client.Patch(ctx, node, patch))
}

// coolingDown reports whether a replacement of the claim began or was
// rolled back within the cool-down.
func (r *Replacer) coolingDown(claim *v1.NodeClaim, now time.Time) bool {
	for _, key := range []string{StartedAnnotation, RolledBackAnnotation} {
		if at, err := time.Parse(time.RFC3339, claim.Annotations[key]); err == nil && now.Sub(at) < r.opts.Cooldown {
			return true
		}
	}
	return false
}

// Decision is a planned replacement of some nodes.
type Decision struct {
	reason string
	claims []*v1.NodeClaim
	move   *provisioning.Move
	// to says where the pods go, for events and annotations.
	to string
	// consolidationType is Karpenter's label: return, single or multi
	// (empty for drift).
	consolidationType string
	// detail is the drift reason of a drift replacement.
	detail string
}

func (d *Decision) saving() float64 { return d.move.LeavingPrice - d.move.Plan.Price() }

// begin marks the nodes, then creates their replacements: a crash between
// the two is rolled back by the next round, never doubled.
func (r *Replacer) begin(ctx context.Context, w *world, d *Decision, spoken map[string]bool) error {
	now := r.clock.Now().UTC().Format(time.RFC3339)
	var names []string
	for _, claim := range d.claims {
		patch := client.MergeFromWithOptions(claim.DeepCopy(), client.MergeFromWithOptimisticLock{})
		if claim.Annotations == nil {
			claim.Annotations = map[string]string{}
		}
		claim.Annotations[ReplacingAnnotation] = d.to
		claim.Annotations[ReasonAnnotation] = d.reason
		claim.Annotations[ReplacementsAnnotation] = strconv.Itoa(len(d.move.Plan.NewNodeClaims))
		claim.Annotations[StartedAnnotation] = now
		if err := r.client.Patch(ctx, claim, patch); err != nil {
			return err
		}
		names = append(names, claim.Name)
	}
	// The room the move counts on is spoken for until it is done: no
	// later plan of this round may count on it too.
	for _, pl := range d.move.Plan.Existing {
		spoken[pl.Node] = true
	}
	var what []string
	for _, nc := range d.move.Plan.NewNodeClaims {
		created, err := r.mover.CreateReplacement(ctx, d.move.Pools[nc.NodePool], nc, map[string]string{
			ReplacementForAnnotation: strings.Join(names, ","), ReasonAnnotation: d.reason, StartedAnnotation: now})
		if err != nil {
			// The next round sees fewer replacements than recorded and rolls back.
			return fmt.Errorf("creating a replacement for nodeclaim %s: %w", strings.Join(names, ", "), err)
		}
		spoken[created.Name] = true
		what = append(what, fmt.Sprintf("%s (nodeclaim %s)", provisioning.DescribeClaim(nc), created.Name))
	}
	// Tainted once its replacements exist, so no new pod lands on a node
	// about to drain. Not before: provisioning would take a tainted node's
	// pods as leaving now and plan capacity for them a second time.
	for _, claim := range d.claims {
		r.keepTainted(ctx, w, claim)
	}
	words := wordings[d.reason]
	for _, claim := range d.claims {
		msg := fmt.Sprintf("Returning to nodepool %s: replaced by %s, saves $%.3f/h; this node drains once the replacement has initialized", d.to, strings.Join(what, ", "), d.saving())
		switch {
		case d.reason == ReasonUnderutilized && len(what) == 0:
			msg = fmt.Sprintf("Underutilized: its pods fit on other nodes, saves $%.3f/h", d.saving())
		case d.reason == ReasonUnderutilized:
			msg = fmt.Sprintf("Underutilized: replaced by %s, saves $%.3f/h; this node drains once the replacement has initialized", strings.Join(what, ", "), d.saving())
		case d.reason == ReasonDrifted && len(what) == 0:
			msg = fmt.Sprintf("Drifted (%s: %s): its pods fit on other nodes, draining", d.detail, driftMessages[cloudprovider.DriftReason(d.detail)])
		case d.reason == ReasonDrifted:
			msg = fmt.Sprintf("Drifted (%s: %s): replaced by %s; this node drains once the replacement has initialized", d.detail, driftMessages[cloudprovider.DriftReason(d.detail)], strings.Join(what, ", "))
		}
		if len(d.claims) > 1 {
			msg += fmt.Sprintf(" (with %d other nodes)", len(d.claims)-1)
		}
		r.event(w, claim, corev1.EventTypeNormal, words.starting, msg)
	}
	log.FromContext(ctx).Info("replacing nodes", "reason", d.reason, "nodeclaims", names, "to", d.to, "consolidation-type", d.consolidationType,
		"pods", d.move.Pods, "price", d.move.LeavingPrice, "new-price", d.move.Plan.Price(), "replacements", what)
	r.Lifecycle.Decided(decisionFor(d.move), metricReason(d.reason), d.consolidationType)
	for _, claim := range d.claims {
		r.metrics.count(d.reason, claim.Labels[v1.NodePoolLabelKey], d.to, "started")
	}
	return nil
}

// spokenFor are the nodes and NodeClaims no move may place pods on: the
// replacements of NodeClaims still there (their room waits for those
// NodeClaims' pods), and the NodeClaims being replaced or deleted.
func spokenFor(w *world) map[string]bool {
	out := map[string]bool{}
	for _, c := range w.claims {
		// A node being replaced or deleted is leaving: no move may put pods
		// on it, to be evicted again when it drains.
		if c.Annotations[ReplacingAnnotation] != "" || c.DeletionTimestamp != nil {
			out[c.Name] = true
			if c.Status.NodeName != "" {
				out[c.Status.NodeName] = true
			}
		}
		for _, of := range replaces(c) {
			if w.byName[of] != nil {
				out[c.Name] = true
				if c.Status.NodeName != "" {
					out[c.Status.NodeName] = true
				}
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
func (r *Replacer) event(w *world, claim *v1.NodeClaim, kind, reason, msg string) {
	r.recorder.Eventf(claim, nil, kind, reason, "Disrupt", "%s", msg)
	if n := w.nodes[claim.Status.NodeName]; n != nil {
		r.recorder.Eventf(n, claim, kind, reason, "Disrupt", "%s", msg)
	}
	if p := w.pools[claim.Labels[v1.NodePoolLabelKey]]; p != nil {
		r.recorder.Eventf(p, claim, kind, reason, "Disrupt", "nodeclaim %s: %s", claim.Name, msg)
	}
}
