package nodeclaim

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider"
	"github.com/backstop-sh/backstop/pkg/controllers"
	"github.com/backstop-sh/backstop/pkg/controllers/metrics"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

// NodeNameIndex indexes pods by spec.nodeName.
const NodeNameIndex = "spec.nodeName"

// IndexPodsByNode registers the pod index the drain needs.
func IndexPodsByNode(ctx context.Context, mgr manager.Manager) error {
	return mgr.GetFieldIndexer().IndexField(ctx, &corev1.Pod{}, NodeNameIndex, func(o client.Object) []string {
		if n := o.(*corev1.Pod).Spec.NodeName; n != "" {
			return []string{n}
		}
		return nil
	})
}

// Termination drains and removes nodes: deleting a NodeClaim deletes its Node;
// a deleting Node is tainted, drained through the Eviction API (PodDisruption
// Budgets respected) until its NodeClaim's terminationGracePeriod runs out,
// then its instance is terminated and the finalizers let go.
type Termination struct {
	client   client.Client
	cloud    cloudprovider.CloudProvider
	recorder events.EventRecorder
	clock    clock.Clock
	// Metrics counts terminated nodes; nil counts nothing.
	Metrics *metrics.Lifecycle
	// Reader, when set, reads the API server itself (not the cache) for
	// the last look at a drained node's pods before it goes.
	Reader client.Reader

	mu sync.Mutex
	// leaving holds, per draining node, when the drain first saw each of
	// its pods terminating, on the controller's clock. A pod's
	// deletionTimestamp is on the API server's clock, which need not be
	// this one (a few seconds of skew; a test's clock far ahead).
	leaving map[string]map[types.UID]time.Time
}

// NewTermination returns the termination controller.
func NewTermination(c client.Client, cloud cloudprovider.CloudProvider, recorder events.EventRecorder, clk clock.Clock) *Termination {
	return &Termination{client: c, cloud: cloud, recorder: recorder, clock: clk, leaving: map[string]map[types.UID]time.Time{}}
}

// Register adds the NodeClaim and Node halves of termination.
func (t *Termination) Register(mgr manager.Manager) error {
	if err := builder.ControllerManagedBy(mgr).Named("nodeclaim.termination").For(&v1.NodeClaim{}).WithOptions(controllers.ParallelOptions(controllers.NodeWorkers)).
		Complete(reconcile.Func(t.ReconcileClaim)); err != nil {
		return err
	}
	return builder.ControllerManagedBy(mgr).Named("node.termination").For(&corev1.Node{}).WithOptions(controllers.ParallelOptions(controllers.NodeWorkers)).
		Complete(reconcile.Func(t.ReconcileNode))
}

// ReconcileClaim terminates a deleted NodeClaim: its Node first, then its instance.
func (t *Termination) ReconcileClaim(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	claim := &v1.NodeClaim{}
	if err := t.client.Get(ctx, req.NamespacedName, claim); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if claim.DeletionTimestamp == nil || !controllerutil.ContainsFinalizer(claim, v1.TerminationFinalizer) {
		return reconcile.Result{}, nil
	}
	if err := t.stampDeadline(ctx, claim); err != nil {
		return reconcile.Result{}, err
	}
	// The Node goes first; its own finalizer drains it.
	if claim.Status.ProviderID != "" {
		var nodes corev1.NodeList
		if err := t.client.List(ctx, &nodes, client.MatchingFields{ProviderIDIndex: claim.Status.ProviderID}); err != nil {
			return reconcile.Result{}, err
		}
		if len(nodes.Items) > 0 {
			for i := range nodes.Items {
				if nodes.Items[i].DeletionTimestamp == nil {
					if err := t.client.Delete(ctx, &nodes.Items[i]); client.IgnoreNotFound(err) != nil {
						return reconcile.Result{}, err
					}
				}
			}
			return reconcile.Result{RequeueAfter: 2 * time.Second}, nil
		}
	}
	// Also without a provider id: a launch whose answer was lost may have
	// made an instance, and the NodeClaim must not go while it runs.
	if err := t.cloud.Delete(ctx, claim); err != nil {
		return reconcile.Result{}, fmt.Errorf("terminating the instance of nodeclaim %s: %w", claim.Name, err)
	}
	log.FromContext(ctx).Info("terminated instance", "nodeclaim", claim.Name, "provider-id", claim.Status.ProviderID)
	patch := client.MergeFrom(claim.DeepCopy())
	controllerutil.RemoveFinalizer(claim, v1.TerminationFinalizer)
	return reconcile.Result{}, client.IgnoreNotFound(t.client.Patch(ctx, claim, patch))
}

// ReconcileNode drains a deleted Node and terminates its instance.
func (t *Termination) ReconcileNode(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	node := &corev1.Node{}
	if err := t.client.Get(ctx, req.NamespacedName, node); err != nil {
		t.forget(req.Name)
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if node.DeletionTimestamp == nil || !controllerutil.ContainsFinalizer(node, v1.TerminationFinalizer) {
		t.forget(node.Name)
		return reconcile.Result{}, nil
	}
	logger := log.FromContext(ctx).WithValues("node", node.Name)
	claim := t.claimOf(ctx, node)
	if err := t.taint(ctx, node); err != nil {
		return reconcile.Result{}, err
	}
	if claim != nil && claim.DeletionTimestamp == nil {
		// A Node deleted first (kubectl delete node) takes its NodeClaim
		// along at once: its pods are planned elsewhere, and its
		// terminationGracePeriod runs from now and is stamped on it.
		if err := t.client.Delete(ctx, claim); client.IgnoreNotFound(err) != nil {
			return reconcile.Result{}, err
		}
	}
	deadline, reason := drainDeadline(ctx, node, claim), drainReason(claim)
	draining, err := t.drain(ctx, t.client, node, deadline, reason)
	if err != nil {
		return reconcile.Result{}, err
	}
	if draining == 0 && t.Reader != nil {
		// The cache may not show yet a pod bound just before the taint;
		// once the node is gone, such a pod would be left on nothing. The
		// API server has the last word.
		if draining, err = t.drain(ctx, t.Reader, node, deadline, reason); err != nil {
			return reconcile.Result{}, err
		}
	}
	if draining > 0 {
		logger.Info("draining node", "pods", draining)
		return reconcile.Result{RequeueAfter: 2 * time.Second}, nil
	}
	if node.Spec.ProviderID != "" {
		if err := t.cloud.Delete(ctx, &v1.NodeClaim{Status: v1.NodeClaimStatus{ProviderID: node.Spec.ProviderID}}); err != nil {
			return reconcile.Result{}, fmt.Errorf("terminating the instance of node %s: %w", node.Name, err)
		}
	}
	if claim != nil && claim.DeletionTimestamp == nil {
		if err := t.client.Delete(ctx, claim); client.IgnoreNotFound(err) != nil {
			return reconcile.Result{}, err
		}
	}
	patch := client.MergeFromWithOptions(node.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(node, v1.TerminationFinalizer)
	if err := t.client.Patch(ctx, node, patch); client.IgnoreNotFound(err) != nil {
		return reconcile.Result{}, err
	}
	t.forget(node.Name)
	t.Metrics.NodeTerminated(node.Labels[v1.NodePoolLabelKey], t.clock.Since(node.DeletionTimestamp.Time), t.clock.Since(node.CreationTimestamp.Time))
	logger.Info("drained and deleted node")
	return reconcile.Result{}, nil
}

// stampDeadline writes on a deleting NodeClaim, once, when its drain ends:
// its deletion plus its terminationGracePeriod. The drain reads it back, so
// a restarted controller keeps the same deadline, and so does anyone
// watching the NodeClaim.
func (t *Termination) stampDeadline(ctx context.Context, claim *v1.NodeClaim) error {
	if claim.Spec.TerminationGracePeriod == nil {
		return nil
	}
	if _, ok := claim.Annotations[v1.TerminationTimestampAnnotation]; ok {
		return nil
	}
	at := claim.DeletionTimestamp.Add(claim.Spec.TerminationGracePeriod.Duration).UTC().Format(time.RFC3339)
	// The lock keeps a deadline someone else wrote meanwhile.
	patch := client.MergeFromWithOptions(claim.DeepCopy(), client.MergeFromWithOptimisticLock{})
	if claim.Annotations == nil {
		claim.Annotations = map[string]string{}
	}
	claim.Annotations[v1.TerminationTimestampAnnotation] = at
	if err := t.client.Patch(ctx, claim, patch); err != nil {
		return client.IgnoreNotFound(err)
	}
	t.recorder.Eventf(claim, nil, corev1.EventTypeNormal, "TerminationGracePeriodExpiring", "Drain",
		"Pods still on the node at %s (terminationGracePeriod %s after deletion) are deleted", at, claim.Spec.TerminationGracePeriod.Duration)
	return nil
}

// drainDeadline is when pods still on the node are deleted outright: the
// NodeClaim's termination timestamp, else its terminationGracePeriod after
// its deletion (or the node's, if the node was deleted first), or the
// reclaim time of an interrupted instance if that comes first.
func drainDeadline(ctx context.Context, node *corev1.Node, claim *v1.NodeClaim) *time.Time {
	var deadline *time.Time
	if claim == nil {
		return nil
	}
	if s, ok := claim.Annotations[v1.TerminationTimestampAnnotation]; ok {
		if at, err := time.Parse(time.RFC3339, s); err == nil {
			deadline = &at
		} else {
			log.FromContext(ctx).Error(err, "ignoring the NodeClaim's termination timestamp: not an RFC 3339 time such as 2026-01-02T15:04:05Z; fix or remove the annotation",
				"nodeclaim", claim.Name, "annotation", v1.TerminationTimestampAnnotation, "value", s)
		}
	}
	if deadline == nil && claim.Spec.TerminationGracePeriod != nil {
		from := node.DeletionTimestamp
		if claim.DeletionTimestamp != nil {
			from = claim.DeletionTimestamp
		}
		d := from.Add(claim.Spec.TerminationGracePeriod.Duration)
		deadline = &d
	}
	if at, err := time.Parse(time.RFC3339, claim.Annotations[v1.ReclaimAtAnnotation]); err == nil && (deadline == nil || at.Before(*deadline)) {
		deadline = &at
	}
	return deadline
}

// responseCode is the HTTP status code of an API call's answer: 200 on
// success, 0 when there was no answer.
func responseCode(err error) int32 {
	if err == nil {
		return http.StatusOK
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return status.Status().Code
	}
	return 0
}

// critical is 1 for a pod of a system-critical priority class, else 0.
func critical(pod *corev1.Pod) int {
	switch pod.Spec.PriorityClassName {
	case "system-cluster-critical", "system-node-critical":
		return 1
	}
	return 0
}

// forget drops what the drain remembered of a node's pods.
func (t *Termination) forget(node string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.leaving, node)
}

func (t *Termination) claimOf(ctx context.Context, node *corev1.Node) *v1.NodeClaim {
	if node.Spec.ProviderID == "" {
		return nil
	}
	var claims v1.NodeClaimList
	if err := t.client.List(ctx, &claims, client.MatchingFields{ProviderIDIndex: node.Spec.ProviderID}); err != nil || len(claims.Items) == 0 {
		return nil
	}
	return &claims.Items[0]
}

func (t *Termination) taint(ctx context.Context, node *corev1.Node) error {
	if scheduling.HasTaint(node.Spec.Taints, v1.DisruptedNoScheduleTaint) {
		return nil
	}
	patch := client.MergeFromWithOptions(node.DeepCopy(), client.MergeFromWithOptimisticLock{})
	node.Spec.Taints = append(node.Spec.Taints, v1.DisruptedNoScheduleTaint)
	return client.IgnoreNotFound(t.client.Patch(ctx, node, patch))
}

// drainReason is why the node goes, as the pods it evicts are counted: the
// NodeClaim's DisruptionReason, Forceful Termination without one.
func drainReason(claim *v1.NodeClaim) string {
	if claim != nil {
		if c := meta.FindStatusCondition(claim.Status.Conditions, v1.ConditionDisruptionReason); c != nil && c.Status == metav1.ConditionTrue {
			return c.Reason
		}
	}
	return v1.ForcefulTermination
}

// drain evicts what must leave the node, of its pods as reader lists them,
// and reports how many are still on their way out. Past the deadline, pods
// are deleted outright.
func (t *Termination) drain(ctx context.Context, reader client.Reader, node *corev1.Node, deadline *time.Time, reason string) (int, error) {
	var pods corev1.PodList
	// The cache's index and the API server's field selector share the name.
	if err := reader.List(ctx, &pods, client.MatchingFields{NodeNameIndex: node.Name}); err != nil {
		return 0, err
	}
	now := t.clock.Now()
	remaining := 0
	t.mu.Lock()
	before := t.leaving[node.Name]
	t.mu.Unlock()
	seen := map[types.UID]time.Time{}
	defer func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if len(seen) == 0 {
			delete(t.leaving, node.Name)
		} else {
			t.leaving[node.Name] = seen
		}
	}()
	// System-critical pods (DNS, say) leave last, once the others are gone,
	// as kubelet's graceful node shutdown orders them.
	slices.SortStableFunc(pods.Items, func(a, b corev1.Pod) int { return cmp.Compare(critical(&a), critical(&b)) })
	others := 0
	for i := range pods.Items {
		pod := &pods.Items[i]
		if !scheduling.MustLeave(pod) {
			continue
		}
		pastDeadline := deadline != nil && !now.Before(*deadline)
		other := critical(pod) == 0
		if pod.DeletionTimestamp != nil && !pastDeadline {
			// Evicted already; it counts until its grace period has passed
			// since the drain evicted it, or first saw it go.
			since, ok := before[pod.UID]
			if !ok {
				since = now
			}
			seen[pod.UID] = since
			if now.Sub(since) < scheduling.TerminationGrace(pod) {
				remaining++
				if other {
					others++
				}
			}
			continue
		}
		remaining++
		if other {
			others++
		}
		if pastDeadline {
			t.recorder.Eventf(pod, node, corev1.EventTypeWarning, "Disrupted", "Drain", "Deleting pod: node %s passed its drain deadline (terminationGracePeriod or reclaim time)", node.Name)
			if err := t.client.Delete(ctx, pod, client.GracePeriodSeconds(0)); client.IgnoreNotFound(err) != nil {
				return remaining, err
			}
			continue
		}
		if deadline != nil && deadline.Sub(now) <= scheduling.TerminationGrace(pod) {
			// Evicted later, it would be killed at the deadline before its
			// grace period ran out: it is deleted now, PodDisruptionBudget
			// or not, with the time that is left.
			grace := max(int64(deadline.Sub(now)/time.Second), 1)
			t.recorder.Eventf(pod, node, corev1.EventTypeWarning, "Disrupted", "Drain",
				"Deleting pod with %ds to stop: node %s drains until %s, sooner than its terminationGracePeriodSeconds would allow after an eviction", grace, node.Name, deadline.UTC().Format(time.RFC3339))
			if err := t.client.Delete(ctx, pod, client.GracePeriodSeconds(grace)); client.IgnoreNotFound(err) != nil {
				return remaining, err
			}
			// Its grace period starts now, not when the drain next sees it.
			seen[pod.UID] = now
			continue
		}
		if !other && others > 0 {
			continue
		}
		protected, err := scheduling.DoNotDisrupt(pod, now)
		if err != nil {
			t.recorder.Eventf(pod, node, corev1.EventTypeWarning, "InvalidDoNotDisruptAnnotation", "Drain", "%v", err)
		}
		if protected {
			// It holds the node until it stops, its protection ends or the
			// deadline nears.
			t.recorder.Eventf(pod, node, corev1.EventTypeNormal, "EvictionBlocked", "Drain", "Not evicting pod: it carries %s=%s; node %s waits for it or for its terminationGracePeriod",
				v1.DoNotDisruptAnnotation, pod.Annotations[v1.DoNotDisruptAnnotation], node.Name)
			continue
		}
		eviction := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace}}
		err = t.client.SubResource("eviction").Create(ctx, pod, eviction)
		if code := responseCode(err); code != 0 {
			t.Metrics.EvictionRequested(code)
		}
		switch {
		case err == nil:
			seen[pod.UID] = now
			t.Metrics.PodDrained(reason)
			t.recorder.Eventf(pod, node, corev1.EventTypeNormal, "Evicted", "Drain", "Evicted pod: node %s is being terminated", node.Name)
		case apierrors.IsTooManyRequests(err):
			t.recorder.Eventf(pod, node, corev1.EventTypeWarning, "EvictionBlocked", "Drain", "Cannot evict pod yet: %v", err)
		case apierrors.IsNotFound(err):
			remaining--
			if other {
				others--
			}
		default:
			return remaining, fmt.Errorf("evicting pod %s/%s: %w", pod.Namespace, pod.Name, err)
		}
	}
	return remaining, nil
}
