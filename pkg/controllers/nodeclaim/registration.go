package nodeclaim

import (
	"context"
	"fmt"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/controllers"
	"github.com/backstop-sh/backstop/pkg/controllers/metrics"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

// ProviderIDIndex indexes NodeClaims by status.providerID and Nodes by spec.providerID.
const ProviderIDIndex = "providerID"

// IndexProviderIDs registers the provider-id indexes the lifecycle needs.
func IndexProviderIDs(ctx context.Context, mgr manager.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(ctx, &v1.NodeClaim{}, ProviderIDIndex, func(o client.Object) []string {
		if id := o.(*v1.NodeClaim).Status.ProviderID; id != "" {
			return []string{id}
		}
		return nil
	}); err != nil {
		return err
	}
	return mgr.GetFieldIndexer().IndexField(ctx, &corev1.Node{}, ProviderIDIndex, func(o client.Object) []string {
		if id := o.(*corev1.Node).Spec.ProviderID; id != "" {
			return []string{id}
		}
		return nil
	})
}

// RegistrationOutcomes hears, per NodePool, whether its NodeClaims' nodes
// registered or the NodeClaims were given up (the NodePool's
// NodeRegistrationHealthy condition).
type RegistrationOutcomes interface {
	Registered(pool string)
	Failed(pool, reason, message string)
}

// Registration adopts the Node that joins for a launched NodeClaim, and marks
// it initialized once it is ready for pods. A NodeClaim whose Node does not
// join within the registration TTL is deleted, which terminates its instance.
type Registration struct {
	client          client.Client
	recorder        events.EventRecorder
	clock           clock.Clock
	RegistrationTTL time.Duration
	// Metrics counts registered nodes; nil counts nothing.
	Metrics *metrics.Lifecycle
	// Outcomes hears of each node registered and each NodeClaim whose node
	// did not register in time; nil hears nothing.
	Outcomes RegistrationOutcomes
	// done remembers the steps (conditions) this process completed, until the
	// cached NodeClaim shows them: the informer cache lags the writes, and a
	// reconcile on the stale copy would redo the step, count the node again
	// and log it again.
	done sync.Map
}

// step is one completed condition of one NodeClaim.
type step struct {
	uid       types.UID
	condition string
}

// shows reports whether the claim has the condition, in the cache or as
// written by this process; once the cache shows it, the memo is dropped.
func (r *Registration) shows(claim *v1.NodeClaim, condition string) bool {
	key := step{claim.UID, condition}
	if meta.IsStatusConditionTrue(claim.Status.Conditions, condition) {
		r.done.Delete(key)
		return true
	}
	_, ok := r.done.Load(key)
	return ok
}

// NewRegistration returns the registration controller.
func NewRegistration(c client.Client, recorder events.EventRecorder, clk clock.Clock, ttl time.Duration) *Registration {
	return &Registration{client: c, recorder: recorder, clock: clk, RegistrationTTL: ttl}
}

// Register adds the controller; Node changes requeue their NodeClaim.
func (r *Registration) Register(mgr manager.Manager) error {
	return builder.ControllerManagedBy(mgr).Named("nodeclaim.registration").For(&v1.NodeClaim{}).WithOptions(controllers.ParallelOptions(controllers.NodeWorkers)).
		Watches(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			var claims v1.NodeClaimList
			// Only the names are read: no copies.
			if err := r.client.List(ctx, &claims, client.MatchingFields{ProviderIDIndex: o.(*corev1.Node).Spec.ProviderID}, client.UnsafeDisableDeepCopy); err != nil {
				return nil
			}
			var out []reconcile.Request
			for _, c := range claims.Items {
				out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&c)})
			}
			return out
		})).Complete(r)
}

// Reconcile registers and initializes one NodeClaim.
func (r *Registration) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	claim := &v1.NodeClaim{}
	if err := r.client.Get(ctx, req.NamespacedName, claim); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if claim.DeletionTimestamp != nil {
		r.done.Delete(step{claim.UID, v1.ConditionRegistered})
		r.done.Delete(step{claim.UID, v1.ConditionInitialized})
		return reconcile.Result{}, nil
	}
	if claim.Status.ProviderID == "" {
		return reconcile.Result{}, nil
	}
	var nodes corev1.NodeList
	if err := r.client.List(ctx, &nodes, client.MatchingFields{ProviderIDIndex: claim.Status.ProviderID}); err != nil {
		return reconcile.Result{}, err
	}
	if len(nodes.Items) == 0 {
		return r.awaitRegistration(ctx, claim)
	}
	node := &nodes.Items[0]
	if !r.shows(claim, v1.ConditionRegistered) {
		if err := r.register(ctx, claim, node); err != nil {
			return retryConflict(err)
		}
		r.done.Store(step{claim.UID, v1.ConditionRegistered}, true)
		if meta.IsStatusConditionTrue(claim.Status.Conditions, v1.ConditionInitialized) {
			// Initialized by the same writes.
			r.done.Store(step{claim.UID, v1.ConditionInitialized}, true)
			return reconcile.Result{}, nil
		}
	}
	if !r.shows(claim, v1.ConditionInitialized) {
		result, err := r.initialize(ctx, claim, node)
		if err != nil {
			return retryConflict(err)
		}
		return result, nil
	}
	return reconcile.Result{}, nil
}

func (r *Registration) awaitRegistration(ctx context.Context, claim *v1.NodeClaim) (reconcile.Result, error) {
	launched := meta.FindStatusCondition(claim.Status.Conditions, v1.ConditionLaunched)
	if launched == nil {
		return reconcile.Result{}, nil
	}
	deadline := launched.LastTransitionTime.Add(r.RegistrationTTL)
	if remaining := deadline.Sub(r.clock.Now()); remaining > 0 {
		return reconcile.Result{RequeueAfter: remaining}, nil
	}
	r.recorder.Eventf(claim, nil, corev1.EventTypeWarning, "RegistrationTimeout", "Register",
		"No node registered for %s within %s; deleting the NodeClaim and terminating its instance", claim.Status.ProviderID, r.RegistrationTTL)
	log.FromContext(ctx).Info("nodeclaim did not register in time", "nodeclaim", claim.Name, "provider-id", claim.Status.ProviderID)
	if r.Outcomes != nil {
		r.Outcomes.Failed(claim.Labels[v1.NodePoolLabelKey], "RegistrationFailed",
			fmt.Sprintf("the node of NodeClaim %s (%s) did not register within %s", claim.Name, claim.Status.ProviderID, r.RegistrationTTL))
	}
	return reconcile.Result{}, client.IgnoreNotFound(r.client.Delete(ctx, claim))
}

// register syncs the claim's labels, annotations and taints onto the Node and
// ties their lives together. Patches carry the resource version: taints and
// conditions are lists, which a merge patch replaces whole, and a stale copy
// must not put back a taint someone just removed, nor drop a condition
// written since (a NodeClaim whose Registered condition a patch from a stale
// copy dropped was registered, and counted, twice).
func (r *Registration) register(ctx context.Context, claim *v1.NodeClaim, node *corev1.Node) error {
	patch := client.MergeFromWithOptions(node.DeepCopy(), client.MergeFromWithOptimisticLock{})
	if node.Labels == nil {
		node.Labels = map[string]string{}
	}
	for k, v := range claim.Labels {
		node.Labels[k] = v
	}
	node.Labels[v1.RegisteredLabelKey] = "true"
	if node.Annotations == nil {
		node.Annotations = map[string]string{}
	}
	for k, v := range claim.Annotations {
		node.Annotations[k] = v
	}
	var taints []corev1.Taint
	for _, t := range node.Spec.Taints {
		if t.Key != v1.UnregisteredTaintKey {
			taints = append(taints, t)
		}
	}
	for _, want := range append(append([]corev1.Taint(nil), claim.Spec.Taints...), claim.Spec.StartupTaints...) {
		if !scheduling.HasTaint(taints, want) {
			taints = append(taints, want)
		}
	}
	node.Spec.Taints = taints
	controllerutil.AddFinalizer(node, v1.TerminationFinalizer)
	if err := controllerutil.SetOwnerReference(claim, node, r.client.Scheme()); err != nil {
		return err
	}
	// A node that joins ready for pods is initialized by the same two
	// writes instead of two more (in a scale-up the API server spent a
	// seventh of its time on NodeClaim status patches); one that is not
	// says why in the same status write.
	notReady := notInitialized(claim, node)
	if notReady == "" {
		node.Labels[v1.InitializedLabelKey] = "true"
	}
	if err := r.client.Patch(ctx, node, patch); err != nil {
		return fmt.Errorf("adopting node %s: %w", node.Name, err)
	}
	statusPatch := client.MergeFromWithOptions(claim.DeepCopy(), client.MergeFromWithOptimisticLock{})
	claim.Status.NodeName = node.Name
	now := metav1.NewTime(r.clock.Now())
	meta.SetStatusCondition(&claim.Status.Conditions, metav1.Condition{Type: v1.ConditionRegistered, Status: metav1.ConditionTrue, Reason: "Registered", ObservedGeneration: claim.Generation, LastTransitionTime: now})
	setInitialized(claim, notReady, now)
	if err := r.client.Status().Patch(ctx, claim, statusPatch); err != nil {
		return err
	}
	r.Metrics.NodeCreated(claim.Labels[v1.NodePoolLabelKey])
	if r.Outcomes != nil {
		r.Outcomes.Registered(claim.Labels[v1.NodePoolLabelKey])
	}
	log.FromContext(ctx).Info("registered node", "nodeclaim", claim.Name, "node", node.Name)
	if notReady == "" {
		log.FromContext(ctx).Info("initialized node", "nodeclaim", claim.Name, "node", node.Name)
	}
	return nil
}

// setInitialized sets the claim's Initialized condition (and Ready with it)
// from why its node is not ready for pods ("" when it is); it reports
// whether anything changed.
func setInitialized(claim *v1.NodeClaim, notReady string, now metav1.Time) bool {
	if notReady != "" {
		return meta.SetStatusCondition(&claim.Status.Conditions, metav1.Condition{Type: v1.ConditionInitialized, Status: metav1.ConditionFalse, Reason: "NotInitialized", Message: notReady, ObservedGeneration: claim.Generation, LastTransitionTime: now})
	}
	initialized := meta.SetStatusCondition(&claim.Status.Conditions, metav1.Condition{Type: v1.ConditionInitialized, Status: metav1.ConditionTrue, Reason: "Initialized", ObservedGeneration: claim.Generation, LastTransitionTime: now})
	ready := meta.SetStatusCondition(&claim.Status.Conditions, metav1.Condition{Type: v1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Ready", ObservedGeneration: claim.Generation, LastTransitionTime: now})
	return initialized || ready
}

// retryConflict asks for the reconcile again without an error when a write
// lost a race: the kubelet (or KWOK) writes the Node every few seconds, and a
// conflict is routine, not worth an error in the log.
func retryConflict(err error) (reconcile.Result, error) {
	if apierrors.IsConflict(err) {
		return reconcile.Result{Requeue: true}, nil
	}
	return reconcile.Result{}, err
}

// notInitialized says why the node is not ready for pods yet — not Ready, a
// startup taint or a not-ready taint still on, a requested extended resource
// not advertised — or "" when it is.
func notInitialized(claim *v1.NodeClaim, node *corev1.Node) string {
	ready := false
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			ready = c.Status == corev1.ConditionTrue
		}
	}
	if !ready {
		return "node is not Ready"
	}
	reason := ""
	for _, t := range claim.Spec.StartupTaints {
		if scheduling.HasTaint(node.Spec.Taints, t) {
			reason = "startup taint " + t.Key + " is still on the node"
		}
	}
	for _, t := range node.Spec.Taints {
		if t.Key == corev1.TaintNodeNotReady || t.Key == corev1.TaintNodeUnreachable || t.Key == "node.cloudprovider.kubernetes.io/uninitialized" {
			reason = "taint " + t.Key + " is still on the node"
		}
	}
	for name, q := range claim.Spec.Resources.Requests {
		if name == corev1.ResourceCPU || name == corev1.ResourceMemory || name == corev1.ResourcePods || name == corev1.ResourceEphemeralStorage {
			continue
		}
		if have, ok := node.Status.Allocatable[name]; !ok || have.Cmp(q) < 0 {
			reason = "extended resource " + string(name) + " is not registered yet"
		}
	}
	return reason
}

// initialize marks the node ready for pods once it is: Ready, startup taints
// removed by whoever owns them, and requested extended resources advertised.
// Until then the claim says why, written only when the reason changes.
func (r *Registration) initialize(ctx context.Context, claim *v1.NodeClaim, node *corev1.Node) (reconcile.Result, error) {
	if reason := notInitialized(claim, node); reason != "" {
		patch := client.MergeFromWithOptions(claim.DeepCopy(), client.MergeFromWithOptimisticLock{})
		if !setInitialized(claim, reason, metav1.NewTime(r.clock.Now())) {
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, client.IgnoreNotFound(r.client.Status().Patch(ctx, claim, patch))
	}
	nodePatch := client.MergeFromWithOptions(node.DeepCopy(), client.MergeFromWithOptimisticLock{})
	node.Labels[v1.InitializedLabelKey] = "true"
	if err := r.client.Patch(ctx, node, nodePatch); err != nil {
		return reconcile.Result{}, err
	}
	patch := client.MergeFromWithOptions(claim.DeepCopy(), client.MergeFromWithOptimisticLock{})
	setInitialized(claim, "", metav1.NewTime(r.clock.Now()))
	if err := r.client.Status().Patch(ctx, claim, patch); err != nil {
		return reconcile.Result{}, err
	}
	r.done.Store(step{claim.UID, v1.ConditionInitialized}, true)
	log.FromContext(ctx).Info("initialized node", "nodeclaim", claim.Name, "node", node.Name)
	return reconcile.Result{}, nil
}
