// Package disruption removes nodes that are no longer wanted: expired ones,
// and empty ones once they have been empty for the pool's consolidateAfter,
// within the pool's disruption budgets.
package disruption

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/controllers/metrics"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

// Nominations says whether pending pods are planned onto a NodeClaim.
type Nominations interface {
	Nominated(ctx context.Context, claim string) bool
}

// Controller looks for disruptable nodes every Every.
type Controller struct {
	client   client.Client
	recorder events.EventRecorder
	clock    clock.Clock
	Every    time.Duration
	// Nominations, when set, keeps nodes that pending pods are planned onto
	// from counting as empty.
	Nominations Nominations
	// Metrics counts disrupted NodeClaims; nil counts nothing.
	Metrics *metrics.Lifecycle

	mu         sync.Mutex
	emptySince map[string]time.Time
}

// New returns the disruption controller.
func New(c client.Client, recorder events.EventRecorder, clk clock.Clock) *Controller {
	return &Controller{client: c, recorder: recorder, clock: clk, Every: 10 * time.Second, emptySince: map[string]time.Time{}}
}

// NeedLeaderElection makes disruption run on the leader only.
func (c *Controller) NeedLeaderElection() bool { return true }

// Start runs rounds until ctx ends.
func (c *Controller) Start(ctx context.Context) error {
	return rounds(ctx, c.clock, c.Every, "disruption", c.Disrupt)
}

// rounds runs round every period of clk until ctx ends, logging failures.
func rounds(ctx context.Context, clk clock.Clock, every time.Duration, what string, round func(context.Context) error) error {
	for {
		if err := round(ctx); err != nil {
			log.FromContext(ctx).Error(err, what+" round failed")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-clk.After(every):
		}
	}
}

// Disrupt runs one round: expired NodeClaims are deleted; empty ones are
// deleted once empty for consolidateAfter, as far as the budgets allow.
func (c *Controller) Disrupt(ctx context.Context) error {
	var pools v1.NodePoolList
	if err := c.client.List(ctx, &pools); err != nil {
		return err
	}
	var claims v1.NodeClaimList
	if err := c.client.List(ctx, &claims); err != nil {
		return err
	}
	var pods corev1.PodList
	if err := c.client.List(ctx, &pods); err != nil {
		return err
	}
	busy := map[string]bool{}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Spec.NodeName != "" && reschedulable(p) {
			busy[p.Spec.NodeName] = true
		}
	}
	now := c.clock.Now()
	byPool := map[string][]*v1.NodeClaim{}
	claimNames := map[string]bool{}
	for i := range claims.Items {
		claimNames[claims.Items[i].Name] = true
		byPool[claims.Items[i].Labels[v1.NodePoolLabelKey]] = append(byPool[claims.Items[i].Labels[v1.NodePoolLabelKey]], &claims.Items[i])
	}
	seen := map[string]bool{}
	eligible := map[string]int{}
	defer func() {
		c.Metrics.Eligible("empty", eligible["empty"])
		c.Metrics.Eligible("expired", eligible["expired"])
	}()
	for i := range pools.Items {
		pool := &pools.Items[i]
		var empty []*v1.NodeClaim
		disrupting := 0
		for _, claim := range byPool[pool.Name] {
			seen[claim.Name] = true
			if pool.Static() {
				// Static pools' nodes are not emptied away, and the static
				// controller replaces expired ones replacement first.
				continue
			}
			if claim.DeletionTimestamp != nil {
				disrupting++
				continue
			}
			claim = c.unmarkStale(ctx, claim, now)
			if !meta.IsStatusConditionTrue(claim.Status.Conditions, v1.ConditionInitialized) {
				continue
			}
			if d := claim.Spec.ExpireAfter.Duration; d != nil && now.Sub(claim.CreationTimestamp.Time) >= *d {
				eligible["expired"]++
				c.remove(ctx, claim, "Expired", fmt.Sprintf("NodeClaim is older than expireAfter %s", claim.Spec.ExpireAfter.String()))
				disrupting++
				continue
			}
			// A node pods are on their way to is not empty, whatever it runs
			// now: nominated pods, or those of the node it replaces.
			waitedFor := c.Nominations != nil && c.Nominations.Nominated(ctx, claim.Name)
			if of := claim.Annotations[ReplacementForAnnotation]; of != "" && claimNames[of] {
				waitedFor = true
			}
			if c.emptyLongEnough(pool, claim, busy[claim.Status.NodeName] || waitedFor, now) {
				empty = append(empty, claim)
			}
		}
		eligible["empty"] += len(empty)
		if len(empty) == 0 {
			continue
		}
		allowed, err := Allowed(pool, v1.DisruptionReasonEmpty, len(byPool[pool.Name]), now)
		if err != nil {
			log.FromContext(ctx).Error(err, "reading disruption budgets", "nodepool", pool.Name)
			continue
		}
		allowed -= disrupting
		// The longest empty go first.
		sort.Slice(empty, func(a, b int) bool { return c.since(empty[a].Name).Before(c.since(empty[b].Name)) })
		for _, claim := range empty {
			if allowed <= 0 {
				c.recorder.Eventf(claim, nil, corev1.EventTypeNormal, "DisruptionBlocked", "Disrupt", "Node is empty, but NodePool %s's disruption budget allows no more disruptions now", pool.Name)
				continue
			}
			c.remove(ctx, claim, "Empty", fmt.Sprintf("Node has been empty for consolidateAfter %s", pool.Spec.Disruption.ConsolidateAfter.String()))
			allowed--
		}
	}
	c.forget(seen)
	return nil
}

// emptyLongEnough tracks when a claim's node became empty.
func (c *Controller) emptyLongEnough(pool *v1.NodePool, claim *v1.NodeClaim, busy bool, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if busy || claim.Status.NodeName == "" {
		delete(c.emptySince, claim.Name)
		return false
	}
	since, ok := c.emptySince[claim.Name]
	if !ok {
		since = now
		c.emptySince[claim.Name] = now
	}
	after := pool.Spec.Disruption.ConsolidateAfter.Duration
	return after != nil && now.Sub(since) >= *after
}

func (c *Controller) since(name string) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.emptySince[name]
}

func (c *Controller) forget(seen map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name := range c.emptySince {
		if !seen[name] {
			delete(c.emptySince, name)
		}
	}
}

func (c *Controller) remove(ctx context.Context, claim *v1.NodeClaim, reason, message string) {
	if err := MarkDisrupted(ctx, c.client, claim, reason, message, c.clock.Now()); err != nil {
		if !apierrors.IsNotFound(err) {
			log.FromContext(ctx).Error(err, "marking nodeclaim disrupted; tried again next round", "nodeclaim", claim.Name, "reason", reason)
		}
		return
	}
	c.recorder.Eventf(claim, nil, corev1.EventTypeNormal, "Disrupting", "Disrupt", "%s: %s", reason, message)
	log.FromContext(ctx).Info("disrupting node", "nodeclaim", claim.Name, "node", claim.Status.NodeName, "reason", reason)
	if err := c.client.Delete(ctx, claim); client.IgnoreNotFound(err) != nil {
		log.FromContext(ctx).Error(err, "deleting nodeclaim", "nodeclaim", claim.Name)
		return
	}
	// Karpenter's reason values are lower case: empty, expired.
	c.Metrics.Disrupted(claim.Labels[v1.NodePoolLabelKey], strings.ToLower(reason), claim.Labels[v1.CapacityTypeLabelKey])
	consolidation := ""
	if reason == "Empty" {
		consolidation = "empty"
	}
	c.Metrics.Decided("delete", strings.ToLower(reason), consolidation)
}

// MarkDisrupted records why a NodeClaim goes, in its DisruptionReason
// condition, before it is deleted: the drain counts the pods it evicts by
// it, and kubectl shows it on the NodeClaim while it drains.
func MarkDisrupted(ctx context.Context, c client.Client, claim *v1.NodeClaim, reason, message string, now time.Time) error {
	marked := claim.DeepCopy()
	meta.SetStatusCondition(&marked.Status.Conditions, metav1.Condition{Type: v1.ConditionDisruptionReason, Status: metav1.ConditionTrue,
		Reason: reason, Message: message, ObservedGeneration: claim.Generation, LastTransitionTime: metav1.NewTime(now)})
	return c.Status().Patch(ctx, marked, client.MergeFromWithOptions(claim, client.MergeFromWithOptimisticLock{}))
}

// staleMark is how old a DisruptionReason on a NodeClaim that is not being
// deleted must be to count as left over: disruption marks a NodeClaim
// and deletes it at once.
const staleMark = time.Minute

// unmarkStale removes a DisruptionReason left on a NodeClaim that is not
// being deleted, by a disruption cut short between the mark and the delete
// (a crash, a failed delete), so that a later deletion for another cause is
// not counted under it. It returns the NodeClaim as it now is.
func (c *Controller) unmarkStale(ctx context.Context, claim *v1.NodeClaim, now time.Time) *v1.NodeClaim {
	cond := meta.FindStatusCondition(claim.Status.Conditions, v1.ConditionDisruptionReason)
	if cond == nil || now.Sub(cond.LastTransitionTime.Time) < staleMark {
		return claim
	}
	unmarked := claim.DeepCopy()
	meta.RemoveStatusCondition(&unmarked.Status.Conditions, v1.ConditionDisruptionReason)
	if err := c.client.Status().Patch(ctx, unmarked, client.MergeFromWithOptions(claim, client.MergeFromWithOptimisticLock{})); err != nil {
		log.FromContext(ctx).Error(err, "removing a left-over DisruptionReason; tried again next round", "nodeclaim", claim.Name)
		return claim
	}
	return unmarked
}

// reschedulable pods keep a node from being empty: not DaemonSet, mirror or finished pods.
func reschedulable(pod *corev1.Pod) bool {
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed || pod.DeletionTimestamp != nil {
		return false
	}
	return !scheduling.FollowsNode(pod)
}

var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Allowed is how many of a pool's nodes may be disrupted for reason now: the
// least of its active budgets (a percentage of total rounds up).
func Allowed(pool *v1.NodePool, reason v1.DisruptionReason, total int, now time.Time) (int, error) {
	allowed := math.MaxInt
	for i, b := range pool.Spec.Disruption.Budgets {
		if len(b.Reasons) > 0 && !containsReason(b.Reasons, reason) {
			continue
		}
		if b.Schedule != nil && b.Duration != nil {
			sched, err := cronParser.Parse(*b.Schedule)
			if err != nil {
				return 0, fmt.Errorf("spec.disruption.budgets[%d].schedule %q: %w", i, *b.Schedule, err)
			}
			// Active when the last firing is no older than duration.
			if sched.Next(now.Add(-b.Duration.Duration).Add(-time.Second)).After(now) {
				continue
			}
		}
		n, err := budgetNodes(b.Nodes, total)
		if err != nil {
			return 0, fmt.Errorf("spec.disruption.budgets[%d].nodes: %w", i, err)
		}
		allowed = min(allowed, n)
	}
	if allowed == math.MaxInt {
		allowed = total
	}
	return allowed, nil
}

func budgetNodes(s string, total int) (int, error) {
	if s == "" {
		s = "10%"
	}
	if pct, ok := strings.CutSuffix(s, "%"); ok {
		p, err := strconv.Atoi(pct)
		if err != nil {
			return 0, err
		}
		return int(math.Ceil(float64(total) * float64(p) / 100)), nil
	}
	return strconv.Atoi(s)
}

func containsReason(rs []v1.DisruptionReason, r v1.DisruptionReason) bool {
	for _, x := range rs {
		if x == r {
			return true
		}
	}
	return false
}
