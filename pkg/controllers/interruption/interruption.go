// Package interruption acts on what a cloud announces about an instance:
// a Spot reclaim, a rebalance recommendation, a scheduled change, a state
// change. It knows NodeClaims, not clouds; a cloud's notice source (the AWS
// SQS queue) finds the NodeClaim and calls Handle.
//
// A reclaim warning is answered replace-then-drain: the node is tainted, which
// makes provisioning plan its pods as if pending and create their NodeClaims
// at once; the NodeClaim is deleted (and so drained) once every pod that must
// leave has a Ready place, or when the reclaim is so close that the pods need
// the rest of the notice to stop. The drain ends at the reclaim time.
package interruption

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/controllers"
	"github.com/backstop-sh/backstop/pkg/controllers/metrics"
	"github.com/backstop-sh/backstop/pkg/controllers/nodeclaim"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

// Kind is what a notice announces. The values are the message_type labels
// of karpenter_interruption_received_messages_total.
type Kind string

// The kinds of notice.
const (
	SpotInterruption Kind = "spot_interrupted"
	Rebalance        Kind = "rebalance_recommendation"
	ScheduledChange  Kind = "scheduled_change"
	StateChange      Kind = "state_change"
)

// Notice is what arrived about one NodeClaim's instance.
type Notice struct {
	Kind Kind
	// ReclaimAt is when a Spot instance is taken back.
	ReclaimAt time.Time
	// Detail says what arrived, for events: "state stopping", "AWS_EC2_…".
	Detail string
}

// Replacements is provisioning, as this package needs it.
type Replacements interface {
	// ReplacementReady reports whether a pod of a leaving node has a Ready place.
	ReplacementReady(ctx context.Context, pod *corev1.Pod) bool
	// Trigger asks for a provisioning batch.
	Trigger()
}

// Controller handles notices and replaces interrupted NodeClaims.
type Controller struct {
	client       client.Client
	recorder     events.EventRecorder
	clock        clock.Clock
	replacements Replacements
	metrics      *Metrics

	// ReplaceOnRebalance makes a rebalance recommendation replace the node
	// as a reclaim warning does, without its deadline.
	ReplaceOnRebalance bool
	// RebalanceWait bounds how long a rebalance replacement waits for the
	// replacements before the node is drained anyway.
	RebalanceWait time.Duration
	// Lifecycle counts disrupted NodeClaims; nil counts nothing.
	Lifecycle *metrics.Lifecycle
}

// New returns the controller; Register wires its replacement half.
func New(c client.Client, recorder events.EventRecorder, clk clock.Clock, r Replacements, m *Metrics) *Controller {
	return &Controller{client: c, recorder: recorder, clock: clk, replacements: r, metrics: m, RebalanceWait: 5 * time.Minute}
}

// Metrics of interruption handling.
type Metrics struct {
	lead    prometheus.Histogram
	drained *prometheus.CounterVec
}

// NewMetrics registers the metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		lead: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "backstop_interruption_replacement_lead_seconds",
			Help:    "How long before its instance's reclaim an interrupted node's pods all had a Ready place; negative when the reclaim came first.",
			Buckets: []float64{-30, 0, 15, 30, 45, 60, 75, 90, 105, 120},
		}),
		drained: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "backstop_interruption_drains_total",
			Help: "Interrupted nodes drained, by why the drain started: replacements_ready, reclaim_near, not_registered or waited_too_long.",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.lead, m.drained)
	return m
}

// Handle acts on a notice for a NodeClaim; it is idempotent, so a notice
// delivered twice does nothing more.
func (c *Controller) Handle(ctx context.Context, claim *v1.NodeClaim, n Notice) error {
	if claim.DeletionTimestamp != nil {
		return nil
	}
	switch n.Kind {
	case SpotInterruption:
		return c.replace(ctx, claim, n)
	case Rebalance:
		c.event(ctx, claim, corev1.EventTypeNormal, "RebalanceRecommendation", "EC2 recommends rebalancing this Spot instance: its capacity is at higher risk of interruption")
		if !c.ReplaceOnRebalance {
			return nil
		}
		return c.replace(ctx, claim, Notice{Kind: Rebalance})
	case ScheduledChange, StateChange:
		c.event(ctx, claim, corev1.EventTypeWarning, eventReason(n.Kind), fmt.Sprintf("%s: deleting the NodeClaim, its node is drained", n.Detail))
		if err := c.client.Delete(ctx, claim); err != nil {
			return client.IgnoreNotFound(err)
		}
		c.Lifecycle.Disrupted(claim.Labels[v1.NodePoolLabelKey], string(n.Kind), claim.Labels[v1.CapacityTypeLabelKey])
		return nil
	default:
		return fmt.Errorf("notice kind %q is not handled", n.Kind)
	}
}

func eventReason(k Kind) string {
	switch k {
	case SpotInterruption:
		return "SpotInterrupted"
	case ScheduledChange:
		return "ScheduledChange"
	case StateChange:
		return "InstanceStateChange"
	}
	return string(k)
}

// replace marks the NodeClaim and taints its node: provisioning then plans
// the pods elsewhere at once, and Reconcile drains when they have a place.
func (c *Controller) replace(ctx context.Context, claim *v1.NodeClaim, n Notice) error {
	if claim.Annotations[v1.InterruptedAnnotation] == "" {
		patch := client.MergeFrom(claim.DeepCopy())
		if claim.Annotations == nil {
			claim.Annotations = map[string]string{}
		}
		claim.Annotations[v1.InterruptedAnnotation] = string(n.Kind)
		claim.Annotations[InterruptedAtAnnotation] = c.clock.Now().UTC().Format(time.RFC3339)
		if !n.ReclaimAt.IsZero() {
			claim.Annotations[v1.ReclaimAtAnnotation] = n.ReclaimAt.UTC().Format(time.RFC3339)
		}
		if err := c.client.Patch(ctx, claim, patch); err != nil {
			return client.IgnoreNotFound(err)
		}
		msg := "replacement capacity requested; the node drains once its pods have a Ready place"
		if !n.ReclaimAt.IsZero() {
			msg = fmt.Sprintf("Spot interruption warning, reclaim at %s: %s, at the latest when the reclaim is near", n.ReclaimAt.UTC().Format(time.RFC3339), msg)
		}
		c.event(ctx, claim, corev1.EventTypeWarning, eventReason(n.Kind), msg)
	}
	if err := c.taint(ctx, claim); err != nil {
		return err
	}
	c.replacements.Trigger()
	return nil
}

// InterruptedAtAnnotation is when the notice was handled (RFC 3339).
const InterruptedAtAnnotation = "backstop.sh/interrupted-at"

func (c *Controller) taint(ctx context.Context, claim *v1.NodeClaim) error {
	if claim.Status.NodeName == "" {
		return nil
	}
	// Others write the node too (the kubelet, registration): a conflict is
	// read again and retried, the taints of others kept.
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		node := &corev1.Node{}
		if err := c.client.Get(ctx, client.ObjectKey{Name: claim.Status.NodeName}, node); err != nil {
			return client.IgnoreNotFound(err)
		}
		if scheduling.HasTaint(node.Spec.Taints, v1.DisruptedNoScheduleTaint) {
			return nil
		}
		patch := client.MergeFromWithOptions(node.DeepCopy(), client.MergeFromWithOptimisticLock{})
		node.Spec.Taints = append(node.Spec.Taints, v1.DisruptedNoScheduleTaint)
		return client.IgnoreNotFound(c.client.Patch(ctx, node, patch))
	})
}

func (c *Controller) event(ctx context.Context, claim *v1.NodeClaim, kind, reason, msg string) {
	c.recorder.Eventf(claim, nil, kind, reason, "Interruption", "%s", msg)
	if claim.Status.NodeName != "" {
		node := &corev1.Node{}
		if err := c.client.Get(ctx, client.ObjectKey{Name: claim.Status.NodeName}, node); err == nil {
			c.recorder.Eventf(node, claim, kind, reason, "Interruption", "%s", msg)
		}
	}
}

// Register adds the replacement half: interrupted NodeClaims not deleted yet.
func (c *Controller) Register(mgr manager.Manager) error {
	interrupted := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetAnnotations()[v1.InterruptedAnnotation] != "" && o.GetDeletionTimestamp() == nil
	})
	return builder.ControllerManagedBy(mgr).Named("interruption.replace").
		For(&v1.NodeClaim{}, builder.WithPredicates(interrupted)).WithOptions(controllers.Options()).Complete(c)
}

// drainMargin is added to the longest grace period of the pods still to
// leave: the drain starts at least that long before the reclaim.
const drainMargin = 5 * time.Second

// Reconcile deletes an interrupted NodeClaim, which drains its node, once
// its pods have Ready places or when the reclaim is near.
func (c *Controller) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	claim := &v1.NodeClaim{}
	if err := c.client.Get(ctx, req.NamespacedName, claim); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if claim.DeletionTimestamp != nil || claim.Annotations[v1.InterruptedAnnotation] == "" {
		return reconcile.Result{}, nil
	}
	if err := c.taint(ctx, claim); err != nil {
		return reconcile.Result{}, err
	}
	now := c.clock.Now()
	reclaimAt, hasReclaim := parseTime(claim.Annotations[v1.ReclaimAtAnnotation])
	interruptedAt, _ := parseTime(claim.Annotations[InterruptedAtAnnotation])

	var reason string
	var waitFor time.Duration
	if claim.Status.NodeName == "" {
		reason = "not_registered"
	} else {
		var pods corev1.PodList
		if err := c.client.List(ctx, &pods, client.MatchingFields{nodeclaim.NodeNameIndex: claim.Status.NodeName}); err != nil {
			return reconcile.Result{}, err
		}
		ready := true
		longest := time.Duration(0)
		for i := range pods.Items {
			pod := &pods.Items[i]
			if pod.DeletionTimestamp != nil || !scheduling.MustLeave(pod) {
				continue
			}
			longest = max(longest, scheduling.TerminationGrace(pod))
			if !c.replacements.ReplacementReady(ctx, pod) {
				ready = false
			}
		}
		drainBy := interruptedAt.Add(c.RebalanceWait)
		if hasReclaim {
			drainBy = reclaimAt.Add(-longest - drainMargin)
		}
		switch {
		case ready:
			reason = "replacements_ready"
			if hasReclaim {
				c.metrics.lead.Observe(reclaimAt.Sub(now).Seconds())
			}
		case !now.Before(drainBy) && hasReclaim:
			reason = "reclaim_near"
		case !now.Before(drainBy):
			reason = "waited_too_long"
		default:
			waitFor = min(time.Second, drainBy.Sub(now))
		}
	}
	if reason == "" {
		return reconcile.Result{RequeueAfter: waitFor}, nil
	}
	c.metrics.drained.WithLabelValues(reason).Inc()
	log.FromContext(ctx).Info("draining interrupted node", "nodeclaim", claim.Name, "node", claim.Status.NodeName, "why", reason)
	msgs := map[string]string{
		"replacements_ready": "every pod that must leave has a Ready place: draining",
		"reclaim_near":       "the reclaim is near: draining now, pods without a Ready place yet wait as Pending",
		"not_registered":     "the instance never registered: deleting it",
		"waited_too_long":    "replacements were not Ready in time: draining now",
	}
	c.recorder.Eventf(claim, nil, corev1.EventTypeNormal, "Draining", "Interruption", "%s", msgs[reason])
	if err := c.client.Delete(ctx, claim); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	c.Lifecycle.Disrupted(claim.Labels[v1.NodePoolLabelKey], claim.Annotations[v1.InterruptedAnnotation], claim.Labels[v1.CapacityTypeLabelKey])
	return reconcile.Result{}, nil
}

func parseTime(s string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339, s)
	return t, err == nil
}
