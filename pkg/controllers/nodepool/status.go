// Package nodepool keeps each NodePool's status: the resources and number of
// its nodes, and whether it can launch (its NodeClass is ready).
package nodepool

import (
	"context"
	"errors"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider"
	"github.com/backstop-sh/backstop/pkg/controllers"
)

// Status is the NodePool status controller. It owns status.resources,
// status.nodes and the Ready condition, and writes only those, with
// optimistic locking: other conditions (SpotAvailable, owned by the launch
// controller) are left as they are.
type Status struct {
	client client.Client
	cloud  cloudprovider.CloudProvider
}

// NewStatus returns the controller.
func NewStatus(c client.Client, cloud cloudprovider.CloudProvider) *Status {
	return &Status{client: c, cloud: cloud}
}

// Register adds the controller; NodeClaim changes requeue their pool, and a
// NodeClass change requeues the pools that use it.
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
	ready := metav1.Condition{Type: v1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Ready", ObservedGeneration: pool.Generation}
	if pool.Static() {
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, "StaticCapacityUnsupported", v1.StaticCapacityUnsupported
	} else if err := s.cloud.NodeClassReady(ctx, pool); err != nil {
		var notReady *cloudprovider.NodeClassNotReadyError
		if !errors.As(err, &notReady) {
			return err
		}
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, notReady.Reason, notReady.Message
	}
	meta.SetStatusCondition(&status.Conditions, ready)
	if equality.Semantic.DeepEqual(status, pool.Status) {
		return nil
	}
	patch := client.MergeFromWithOptions(pool.DeepCopy(), client.MergeFromWithOptimisticLock{})
	pool.Status = status
	return s.client.Status().Patch(ctx, pool, patch)
}
