// Package nodepool keeps each NodePool's status: the resources and number of
// its nodes, and whether it can launch (its EC2NodeClass is ready).
package nodepool

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
	v1 "github.com/backstop-sh/backstop/apis/v1"
)

// Status is the NodePool status controller.
type Status struct {
	client client.Client
}

// NewStatus returns the controller.
func NewStatus(c client.Client) *Status { return &Status{client: c} }

// Register adds the controller; NodeClaim changes requeue their pool.
func (s *Status) Register(mgr manager.Manager) error {
	return builder.ControllerManagedBy(mgr).Named("nodepool.status").For(&v1.NodePool{}).
		Watches(&v1.NodeClaim{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			if pool := o.GetLabels()[v1.NodePoolLabelKey]; pool != "" {
				return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: pool}}}
			}
			return nil
		})).Complete(s)
}

// Reconcile recomputes one pool's status.
func (s *Status) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	pool := &v1.NodePool{}
	if err := s.client.Get(ctx, req.NamespacedName, pool); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	var claims v1.NodeClaimList
	if err := s.client.List(ctx, &claims, client.MatchingLabels{v1.NodePoolLabelKey: pool.Name}); err != nil {
		return reconcile.Result{}, err
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
	class := &awsv1.EC2NodeClass{}
	ref := pool.Spec.Template.Spec.NodeClassRef
	switch err := s.client.Get(ctx, client.ObjectKey{Name: ref.Name}, class); {
	case err != nil:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, "NodeClassNotFound", "EC2NodeClass "+ref.Name+" was not found"
	case !meta.IsStatusConditionTrue(class.Status.Conditions, awsv1.ConditionReady):
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, "NodeClassNotReady", "EC2NodeClass "+ref.Name+" is not ready"
	}
	meta.SetStatusCondition(&status.Conditions, ready)
	if !equality.Semantic.DeepEqual(status, pool.Status) {
		patch := client.MergeFrom(pool.DeepCopy())
		pool.Status = status
		if err := s.client.Status().Patch(ctx, pool, patch); err != nil {
			return reconcile.Result{}, client.IgnoreNotFound(err)
		}
	}
	// NodeClass readiness changes without a NodePool event.
	return reconcile.Result{RequeueAfter: 30 * time.Second}, nil
}
