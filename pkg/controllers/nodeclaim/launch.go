// Package nodeclaim runs a NodeClaim's lifecycle. Launch (this file) turns a
// new NodeClaim into an instance; on a capacity error it deletes the NodeClaim
// at once and hands its pods back to provisioning, so the next plan — which no
// longer sees what ran out — picks other Spot types or the next pool.
package nodeclaim

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider"
	"github.com/backstop-sh/backstop/pkg/controllers"
)

// LaunchOutcomes is provisioning, told how launches end.
type LaunchOutcomes interface {
	// LaunchFailed is told when a NodeClaim is given up for lack of
	// capacity, so its pods are planned again at once.
	LaunchFailed(claim *v1.NodeClaim, reason string)
	// Launched is told of the instance made for a NodeClaim before the
	// NodeClaim records it: a node that joins before the record reaches
	// the cache is known as that NodeClaim's, not counted as room twice.
	Launched(claim *v1.NodeClaim, providerID string)
}

// Launch is the launch step of the lifecycle.
type Launch struct {
	client   client.Client
	cloud    cloudprovider.CloudProvider
	recorder events.EventRecorder
	clock    clock.Clock
	failures LaunchOutcomes
	metrics  *LaunchMetrics
	// Workers launch this many NodeClaims at once, so one slow or failing
	// launch never holds up the others.
	Workers int
	// Timeout gives up a NodeClaim that could not launch for this long for
	// reasons other than capacity (capacity errors give it up at once).
	Timeout time.Duration
	// Outcomes hears of each NodeClaim given up because it could not
	// launch for the launch timeout; nil hears nothing.
	Outcomes RegistrationOutcomes
	// launched remembers instances until the NodeClaim's status shows them:
	// the informer cache lags the writes, and a second call is wasted.
	launched sync.Map
}

// LaunchMetrics count launch failures.
type LaunchMetrics struct {
	failures *prometheus.CounterVec
}

// NewLaunchMetrics registers the launch metrics.
func NewLaunchMetrics(reg prometheus.Registerer) *LaunchMetrics {
	m := &LaunchMetrics{failures: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "karpenter_cloudprovider_instance_launch_failures_total",
		Help: "Failed instance launches, by capacity type, zone and EC2 error code.",
	}, []string{"capacity_type", "zone", "reason"})}
	reg.MustRegister(m.failures)
	return m
}

// NewLaunch returns the launch controller.
func NewLaunch(c client.Client, cloud cloudprovider.CloudProvider, recorder events.EventRecorder, clk clock.Clock, failures LaunchOutcomes, metrics *LaunchMetrics) *Launch {
	return &Launch{client: c, cloud: cloud, recorder: recorder, clock: clk, failures: failures, metrics: metrics, Workers: 10, Timeout: 5 * time.Minute}
}

// Register adds the controller to the manager.
func (l *Launch) Register(mgr manager.Manager) error {
	return builder.ControllerManagedBy(mgr).Named("nodeclaim.launch").For(&v1.NodeClaim{}).WithOptions(controllers.ParallelOptions(l.Workers)).Complete(l)
}

// Reconcile launches one NodeClaim.
func (l *Launch) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	claim := &v1.NodeClaim{}
	if err := l.client.Get(ctx, req.NamespacedName, claim); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if claim.DeletionTimestamp != nil || claim.Status.ProviderID != "" || meta.IsStatusConditionTrue(claim.Status.Conditions, v1.ConditionLaunched) {
		l.launched.Delete(claim.UID)
		return reconcile.Result{}, nil
	}
	logger := log.FromContext(ctx).WithValues("nodeclaim", claim.Name, "nodepool", claim.Labels[v1.NodePoolLabelKey])
	var inst *cloudprovider.Instance
	var err error
	if known, ok := l.launched.Load(claim.UID); ok {
		done := known.(*launched)
		if done.recorded {
			// Recorded on the NodeClaim already; the cache has not caught up.
			return reconcile.Result{}, nil
		}
		inst = done.inst
	} else {
		inst, err = l.cloud.Create(ctx, claim)
	}
	if err != nil {
		var ice *cloudprovider.InsufficientCapacityError
		var cfg *cloudprovider.ConfigurationError
		var notReady *cloudprovider.NodeClassNotReadyError
		var retry *cloudprovider.RetryableError
		switch {
		case errors.As(err, &retry) && retry.RetryAfter > 0:
			// A fault of known length: said on the NodeClaim and asked
			// again then, not at controller-runtime's backoff from 5 ms.
			logger.Info("launch refused for now; retrying", "error-code", retry.Code, "request-id", retry.RequestID, "after", retry.RetryAfter)
			// The message leaves the request id out (logged above): the
			// same condition again is no update, so no reconcile comes early.
			return l.notLaunched(ctx, claim, retry.Code, retry.Err.Error(), retry.RetryAfter)
		case errors.As(err, &notReady):
			after := 30 * time.Second
			if notReady.Reason == "NodeClassNotFound" {
				after = time.Minute
			}
			return l.notLaunched(ctx, claim, notReady.Reason, notReady.Message, after)
		case errors.As(err, &ice):
			l.metrics.failures.WithLabelValues(capacityTypeOf(claim), zoneOf(claim), ice.Code).Inc()
			l.recorder.Eventf(claim, nil, corev1.EventTypeWarning, "InsufficientCapacityError", "Launch", "NodeClaim %s: %s", claim.Name, ice.Message)
			logger.Info("no capacity; giving the pods back to provisioning", "error-code", ice.Code, "request-id", ice.RequestID, "reason", ice.Message)
			if ice.ClosedCapacityType == v1.CapacityTypeSpot {
				l.setSpotCondition(ctx, claim, metav1.ConditionFalse, ice.Code, ice.Message)
			}
			// Provisioning learns which pods fell back before the NodeClaim
			// goes: a batch that runs once it is gone tells them why.
			l.failures.LaunchFailed(claim, ice.Code)
			// The cloud said no instance was made; Delete is still asked, by
			// the termination finalizer, before the NodeClaim goes.
			if err := l.client.Delete(ctx, claim); client.IgnoreNotFound(err) != nil {
				return reconcile.Result{}, err
			}
			return reconcile.Result{}, nil
		case errors.As(err, &cfg):
			l.metrics.failures.WithLabelValues(capacityTypeOf(claim), zoneOf(claim), cfg.Code).Inc()
			l.recorder.Eventf(claim, nil, corev1.EventTypeWarning, "LaunchFailed", "Launch", "%s", cfg.Message)
			logger.Error(err, "launch failed: configuration", "error-code", cfg.Code, "request-id", cfg.RequestID)
			return l.notLaunched(ctx, claim, cfg.Code, cfg.Message, time.Minute)
		default:
			// Passing faults: controller-runtime retries with jittered backoff.
			return reconcile.Result{}, fmt.Errorf("launching nodeclaim %s: %w", claim.Name, err)
		}
	}

	l.launched.Store(claim.UID, &launched{inst: inst})
	l.failures.Launched(claim, inst.ProviderID)
	patch := client.MergeFrom(claim.DeepCopy())
	if claim.Labels == nil {
		claim.Labels = map[string]string{}
	}
	for k, v := range inst.Labels {
		claim.Labels[k] = v
	}
	claim.Labels[corev1.LabelInstanceTypeStable] = inst.InstanceType
	claim.Labels[corev1.LabelTopologyZone] = inst.Zone
	claim.Labels[v1.CapacityTypeLabelKey] = inst.CapacityType
	if len(inst.Annotations) > 0 && claim.Annotations == nil {
		claim.Annotations = map[string]string{}
	}
	for k, v := range inst.Annotations {
		claim.Annotations[k] = v
	}
	if err := l.client.Patch(ctx, claim, patch); err != nil {
		return reconcile.Result{}, err
	}
	// Status patches carry the resource version: a merge patch replaces
	// the whole list of conditions, and one from a stale copy would drop a
	// condition written since. A conflict reconciles again; the instance is
	// remembered (launched), not made twice.
	statusPatch := client.MergeFromWithOptions(claim.DeepCopy(), client.MergeFromWithOptimisticLock{})
	claim.Status.ProviderID, claim.Status.ImageID = inst.ProviderID, inst.ImageID
	claim.Status.Capacity, claim.Status.Allocatable = inst.Capacity, inst.Allocatable
	meta.SetStatusCondition(&claim.Status.Conditions, metav1.Condition{Type: v1.ConditionLaunched, Status: metav1.ConditionTrue, Reason: "Launched", ObservedGeneration: claim.Generation, LastTransitionTime: metav1.NewTime(l.clock.Now())})
	if err := l.client.Status().Patch(ctx, claim, statusPatch); err != nil {
		return retryConflict(err)
	}
	l.launched.Store(claim.UID, &launched{inst: inst, recorded: true})
	if inst.CapacityType == v1.CapacityTypeSpot {
		l.setSpotCondition(ctx, claim, metav1.ConditionTrue, "SpotLaunched", "")
	}
	l.recorder.Eventf(claim, nil, corev1.EventTypeNormal, "Launched", "Launch", "Launched %s %s in %s (%s)", inst.CapacityType, inst.InstanceType, inst.Zone, inst.ID)
	logger.Info("launched nodeclaim", "instance-type", inst.InstanceType, "zone", inst.Zone, "capacity-type", inst.CapacityType, "provider-id", inst.ProviderID)
	return reconcile.Result{}, nil
}

// launched is an instance made for a NodeClaim, and whether the NodeClaim
// records it yet.
type launched struct {
	inst     *cloudprovider.Instance
	recorded bool
}

// ConditionSpotAvailable is the NodePool condition that says whether Spot can
// be launched at all, and, when not, why and how to fix it.
const ConditionSpotAvailable = "SpotAvailable"

// setSpotCondition records on the claim's NodePool whether Spot launches. The
// launch controller owns this one condition and writes it with optimistic
// locking, so it never erases a condition another controller set meanwhile.
func (l *Launch) setSpotCondition(ctx context.Context, claim *v1.NodeClaim, status metav1.ConditionStatus, reason, message string) {
	name := claim.Labels[v1.NodePoolLabelKey]
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pool := &v1.NodePool{}
		if err := l.client.Get(ctx, client.ObjectKey{Name: name}, pool); err != nil {
			return err
		}
		if c := meta.FindStatusCondition(pool.Status.Conditions, ConditionSpotAvailable); c != nil && c.Status == status && c.Reason == reasonName(reason) && c.Message == message {
			return nil
		}
		patch := client.MergeFromWithOptions(pool.DeepCopy(), client.MergeFromWithOptimisticLock{})
		meta.SetStatusCondition(&pool.Status.Conditions, metav1.Condition{Type: ConditionSpotAvailable, Status: status, Reason: reasonName(reason), Message: message, ObservedGeneration: pool.Generation})
		return l.client.Status().Patch(ctx, pool, patch)
	})
	if client.IgnoreNotFound(err) != nil {
		log.FromContext(ctx).Error(err, "recording Spot availability on the nodepool", "nodepool", name)
	}
}

// reasonName makes an EC2 code a valid condition reason (no dots).
func reasonName(code string) string {
	out := make([]rune, 0, len(code))
	for _, r := range code {
		if r == '.' || r == ':' {
			continue
		}
		out = append(out, r)
	}
	return string(out)
}

// notLaunched records why a NodeClaim could not launch and tries again later,
// or gives it up once it has tried for the launch timeout.
func (l *Launch) notLaunched(ctx context.Context, claim *v1.NodeClaim, reason, message string, after time.Duration) (reconcile.Result, error) {
	if age := l.clock.Since(claim.CreationTimestamp.Time); l.Timeout > 0 && age >= l.Timeout {
		l.recorder.Eventf(claim, nil, corev1.EventTypeWarning, "LaunchTimeout", "Launch", "Giving up after %s: %s", l.Timeout, message)
		log.FromContext(ctx).Info("giving up a nodeclaim that cannot launch", "nodeclaim", claim.Name, "reason", reason, "message", message)
		if err := l.client.Delete(ctx, claim); client.IgnoreNotFound(err) != nil {
			return reconcile.Result{}, err
		}
		l.failures.LaunchFailed(claim, reason)
		if l.Outcomes != nil {
			l.Outcomes.Failed(claim.Labels[v1.NodePoolLabelKey], reason, message)
		}
		return reconcile.Result{}, nil
	} else if l.Timeout > 0 {
		after = min(after, l.Timeout-age)
	}
	patch := client.MergeFromWithOptions(claim.DeepCopy(), client.MergeFromWithOptimisticLock{})
	meta.SetStatusCondition(&claim.Status.Conditions, metav1.Condition{Type: v1.ConditionLaunched, Status: metav1.ConditionFalse, Reason: reason, Message: message, ObservedGeneration: claim.Generation})
	if err := l.client.Status().Patch(ctx, claim, patch); client.IgnoreNotFound(err) != nil {
		return retryConflict(err)
	}
	return reconcile.Result{RequeueAfter: after}, nil
}

// capacityTypeOf is the capacity type the claim asked for: one value, or "mixed".
func capacityTypeOf(claim *v1.NodeClaim) string {
	for _, r := range claim.Spec.Requirements {
		if r.Key == v1.CapacityTypeLabelKey && r.Operator == v1.OpIn {
			if len(r.Values) == 1 {
				return r.Values[0]
			}
			if containsString(r.Values, v1.CapacityTypeSpot) {
				return v1.CapacityTypeSpot
			}
		}
	}
	return "unknown"
}

func zoneOf(claim *v1.NodeClaim) string {
	for _, r := range claim.Spec.Requirements {
		if r.Key == corev1.LabelTopologyZone && r.Operator == v1.OpIn && len(r.Values) == 1 {
			return r.Values[0]
		}
	}
	return ""
}

func containsString(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
