// Package nodepool keeps each NodePool's status: the resources and number of
// its nodes, and whether it can launch (its NodeClass is ready).
package nodepool

import (
	"context"
	"errors"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider"
	"github.com/backstop-sh/backstop/pkg/controllers"
)

// Status is the NodePool status controller. It owns status.resources,
// status.nodes, status.nodeClassObservedGeneration and the Ready,
// NodeClassReady, ValidationSucceeded and NodeRegistrationHealthy
// conditions, and writes only those, with optimistic locking: other
// conditions (SpotAvailable, owned by the launch controller) are left as
// they are.
type Status struct {
	client client.Client
	cloud  cloudprovider.CloudProvider
	// Health holds the pools' recent launch and registration outcomes; nil
	// leaves NodeRegistrationHealthy Unknown.
	Health *RegistrationHealth
}

// NewStatus returns the controller.
func NewStatus(c client.Client, cloud cloudprovider.CloudProvider) *Status {
	return &Status{client: c, cloud: cloud}
}

// Register adds the controller; NodeClaim changes requeue their pool, a
// NodeClass change requeues the pools that use it, and a launch or
// registration outcome its pool.
func (s *Status) Register(mgr manager.Manager) error {
	b := builder.ControllerManagedBy(mgr).Named("nodepool.status").For(&v1.NodePool{}).WithOptions(controllers.Options()).
		Watches(&v1.NodeClaim{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			if pool := o.GetLabels()[v1.NodePoolLabelKey]; pool != "" {
				return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: pool}}}
			}
			return nil
		}))
	for _, kind := range s.cloud.NodeClasses() {
		b = b.Watches(kind, handler.EnqueueRequestsFromMapFunc(s.poolsOf))
	}
	if s.Health != nil {
		b = b.WatchesRawSource(s.Health.Source())
	}
	return b.Complete(s)
}

// poolsOf lists the pools whose nodeClassRef names the class.
func (s *Status) poolsOf(ctx context.Context, class client.Object) []reconcile.Request {
	var pools v1.NodePoolList
	if err := s.client.List(ctx, &pools); err != nil {
		return nil
	}
	var out []reconcile.Request
	for _, p := range pools.Items {
		if ref := p.Spec.Template.Spec.NodeClassRef; ref != nil && ref.Name == class.GetName() {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKey{Name: p.Name}})
		}
	}
	return out
}

// Reconcile recomputes one pool's status.
func (s *Status) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error { return s.update(ctx, req.Name) })
	return reconcile.Result{}, client.IgnoreNotFound(err)
}

func (s *Status) update(ctx context.Context, name string) error {
	pool := &v1.NodePool{}
	if err := s.client.Get(ctx, client.ObjectKey{Name: name}, pool); err != nil {
		if apierrors.IsNotFound(err) {
			s.Health.Forget(name)
		}
		return err
	}
	// Read only, so the cache's own objects: this runs on every NodeClaim
	// change, and copying each claim (sixty instance types in its
	// requirements) every time was most of what a scale-up allocated.
	var claims v1.NodeClaimList
	if err := s.client.List(ctx, &claims, client.MatchingLabels{v1.NodePoolLabelKey: pool.Name}, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	resources := corev1.ResourceList{}
	var nodes int64
	for _, c := range claims.Items {
		nodes++
		for name, q := range c.Status.Capacity {
			total := resources[name]
			total.Add(q)
			resources[name] = total
		}
	}
	resources["nodes"] = *resource.NewQuantity(nodes, resource.DecimalSI)

	status := *pool.Status.DeepCopy()
	status.Resources, status.Nodes = resources, &nodes
	classGeneration, err := s.nodeClassGeneration(ctx, pool)
	if err != nil {
		return err
	}
	status.NodeClassObservedGeneration = classGeneration
	classReady := metav1.Condition{Type: v1.ConditionNodeClassReady, Status: metav1.ConditionTrue, Reason: v1.ConditionNodeClassReady, ObservedGeneration: pool.Generation}
	if err := s.cloud.NodeClassReady(ctx, pool); err != nil {
		var notReady *cloudprovider.NodeClassNotReadyError
		if !errors.As(err, &notReady) {
			return err
		}
		classReady.Status, classReady.Reason, classReady.Message = metav1.ConditionFalse, notReady.Reason, notReady.Message
	}
	meta.SetStatusCondition(&status.Conditions, classReady)
	// What CEL cannot check is checked where it is used (the planner
	// reports a requirement no type meets), so validation always passes.
	meta.SetStatusCondition(&status.Conditions, metav1.Condition{Type: v1.ConditionValidationSucceeded, Status: metav1.ConditionTrue, Reason: v1.ConditionValidationSucceeded, ObservedGeneration: pool.Generation})
	ready := metav1.Condition{Type: v1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Ready", ObservedGeneration: pool.Generation}
	if classReady.Status != metav1.ConditionTrue {
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, classReady.Reason, classReady.Message
	}
	meta.SetStatusCondition(&status.Conditions, ready)
	s.judgeRegistration(pool, &status, classGeneration)
	if equality.Semantic.DeepEqual(status, pool.Status) {
		return nil
	}
	patch := client.MergeFromWithOptions(pool.DeepCopy(), client.MergeFromWithOptimisticLock{})
	pool.Status = status
	return s.client.Status().Patch(ctx, pool, patch)
}

// judgeRegistration sets NodeRegistrationHealthy from the pool's outcomes
// since it and its NodeClass last changed; with none to judge, the
// condition stays as written for these generations (so it survives a
// restart), else it is Unknown.
func (s *Status) judgeRegistration(pool *v1.NodePool, status *v1.NodePoolStatus, classGeneration int64) {
	s.Health.Observe(pool.Name, pool.Generation, classGeneration)
	if st, reason, message, ok := s.Health.Status(pool.Name); ok {
		meta.SetStatusCondition(&status.Conditions, metav1.Condition{Type: v1.ConditionNodeRegistrationHealthy, Status: st,
			Reason: reason, Message: message, ObservedGeneration: pool.Generation})
		return
	}
	prev := meta.FindStatusCondition(pool.Status.Conditions, v1.ConditionNodeRegistrationHealthy)
	if prev != nil && prev.ObservedGeneration == pool.Generation && pool.Status.NodeClassObservedGeneration == classGeneration {
		return
	}
	meta.SetStatusCondition(&status.Conditions, metav1.Condition{Type: v1.ConditionNodeRegistrationHealthy, Status: metav1.ConditionUnknown,
		Reason: "AwaitingRegistration", ObservedGeneration: pool.Generation,
		Message: "no NodeClaim of this NodePool has registered or been given up since the NodePool or its NodeClass last changed"})
}

// nodeClassGeneration is the generation of the pool's NodeClass; 0 when
// it has none or it does not exist.
func (s *Status) nodeClassGeneration(ctx context.Context, pool *v1.NodePool) (int64, error) {
	ref := pool.Spec.Template.Spec.NodeClassRef
	if ref == nil {
		return 0, nil
	}
	for _, kind := range s.cloud.NodeClasses() {
		gvk, err := apiutil.GVKForObject(kind, s.client.Scheme())
		if err != nil || gvk.Kind != ref.Kind || gvk.Group != ref.Group {
			continue
		}
		class := kind.DeepCopyObject().(client.Object)
		if err := s.client.Get(ctx, client.ObjectKey{Name: ref.Name}, class); err != nil {
			return 0, client.IgnoreNotFound(err)
		}
		return class.GetGeneration(), nil
	}
	return 0, nil
}
