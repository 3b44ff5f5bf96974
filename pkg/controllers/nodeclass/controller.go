// Package nodeclass keeps each EC2NodeClass's status current: the subnets,
// security groups and images its selector terms match, and its conditions.
package nodeclass

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/controllers"
)

// Resolver resolves a class's selector terms.
type Resolver interface {
	Resolve(ctx context.Context, nc *awsv1.EC2NodeClass) (awsv1.EC2NodeClassStatus, error)
	// Cleanup removes what was made for a class going away (its instance
	// profile, its launch templates).
	Cleanup(ctx context.Context, nc *awsv1.EC2NodeClass) error
}

// Finalizer holds a deleted EC2NodeClass until its NodeClaims are gone and
// what Backstop made for it is removed; Karpenter's name, so a class moved
// from Karpenter keeps working.
const Finalizer = "karpenter.k8s.aws/termination"

// Controller resolves EC2NodeClasses and writes their status.
type Controller struct {
	client   client.Client
	resolver Resolver
	clock    clock.Clock
	// Every re-resolves ready classes, since subnets and images change outside Kubernetes.
	Every time.Duration
	// ReservationsEvery re-resolves classes that select capacity
	// reservations, whose room changes as the account launches (Karpenter
	// reads it every minute).
	ReservationsEvery time.Duration
}

// New returns the controller.
func New(c client.Client, r Resolver, clk clock.Clock) *Controller {
	return &Controller{client: c, resolver: r, clock: clk, Every: 5 * time.Minute, ReservationsEvery: time.Minute}
}

// Register adds the controller to the manager.
func (c *Controller) Register(mgr manager.Manager) error {
	return builder.ControllerManagedBy(mgr).Named("nodeclass.status").For(&awsv1.EC2NodeClass{}).
		// A deleted class is let go as soon as its last NodeClaim is gone,
		// and a cluster placement group's zone is learnt once a NodeClaim
		// has launched into it; other NodeClaims wake nothing (resolving
		// calls AWS).
		Watches(&v1.NodeClaim{}, handler.EnqueueRequestsFromMapFunc(c.classToResolve)).
		WithOptions(controllers.Options()).Complete(c)
}

// classToResolve maps a NodeClaim to its EC2NodeClass, read from the cache,
// when that is being deleted, or when the NodeClaim has launched into the
// class's cluster placement group whose zone the class does not know yet.
func (c *Controller) classToResolve(ctx context.Context, o client.Object) []reconcile.Request {
	claim, ok := o.(*v1.NodeClaim)
	if !ok || claim.Spec.NodeClassRef == nil || claim.Spec.NodeClassRef.Kind != "EC2NodeClass" {
		return nil
	}
	nc := &awsv1.EC2NodeClass{}
	if err := c.client.Get(ctx, client.ObjectKey{Name: claim.Spec.NodeClassRef.Name}, nc); err != nil {
		return nil
	}
	pg := nc.Status.PlacementGroup
	zoneUnknown := pg != nil && pg.Strategy == awsv1.PlacementStrategyCluster && pg.Zone == "" && claim.Status.ProviderID != ""
	if nc.DeletionTimestamp.IsZero() && !zoneUnknown {
		return nil
	}
	return []reconcile.Request{{NamespacedName: client.ObjectKeyFromObject(nc)}}
}

// Reconcile resolves one class.
func (c *Controller) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	nc := &awsv1.EC2NodeClass{}
	if err := c.client.Get(ctx, req.NamespacedName, nc); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !nc.DeletionTimestamp.IsZero() {
		return c.finalize(ctx, nc)
	}
	if !controllerutil.ContainsFinalizer(nc, Finalizer) {
		patch := client.MergeFromWithOptions(nc.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controllerutil.AddFinalizer(nc, Finalizer)
		if err := c.client.Patch(ctx, nc, patch); err != nil {
			return reconcile.Result{}, client.IgnoreNotFound(err)
		}
	}
	status, err := c.resolver.Resolve(ctx, nc)
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("resolving ec2nodeclass %s: %w", nc.Name, err)
	}
	// Keep transition times of conditions that did not change.
	for i := range status.Conditions {
		for _, old := range nc.Status.Conditions {
			if old.Type == status.Conditions[i].Type && old.Status == status.Conditions[i].Status {
				status.Conditions[i].LastTransitionTime = old.LastTransitionTime
			}
		}
		if status.Conditions[i].LastTransitionTime.IsZero() {
			status.Conditions[i].LastTransitionTime = metav1.NewTime(c.clock.Now())
		}
	}
	if !equality.Semantic.DeepEqual(nc.Status, status) {
		patch := client.MergeFrom(nc.DeepCopy())
		nc.Status = status
		if err := c.client.Status().Patch(ctx, nc, patch); err != nil {
			if apierrors.IsNotFound(err) {
				return reconcile.Result{}, nil
			}
			return reconcile.Result{}, err
		}
		log.FromContext(ctx).Info("resolved ec2nodeclass", "ec2nodeclass", nc.Name, "subnets", len(status.Subnets),
			"security-groups", len(status.SecurityGroups), "amis", len(status.AMIs), "ready", ready(status))
	}
	after := c.Every
	if len(nc.Spec.CapacityReservationSelectorTerms) > 0 && c.ReservationsEvery > 0 {
		after = min(after, c.ReservationsEvery)
	}
	return reconcile.Result{RequeueAfter: after}, nil
}

func ready(s awsv1.EC2NodeClassStatus) bool {
	for _, c := range s.Conditions {
		if c.Type == awsv1.ConditionReady {
			return c.Status == "True"
		}
	}
	return false
}

// finalize waits for the class's NodeClaims to go (their instances use its
// profile and templates), then removes what was made for it and lets it go.
func (c *Controller) finalize(ctx context.Context, nc *awsv1.EC2NodeClass) (reconcile.Result, error) {
	if !controllerutil.ContainsFinalizer(nc, Finalizer) {
		return reconcile.Result{}, nil
	}
	claims := &v1.NodeClaimList{}
	if err := c.client.List(ctx, claims); err != nil {
		return reconcile.Result{}, err
	}
	var using []string
	for _, claim := range claims.Items {
		if ref := claim.Spec.NodeClassRef; ref != nil && ref.Kind == "EC2NodeClass" && ref.Name == nc.Name {
			using = append(using, claim.Name)
		}
	}
	if len(using) > 0 {
		log.FromContext(ctx).Info("ec2nodeclass is deleted; waiting for its nodeclaims to terminate", "ec2nodeclass", nc.Name, "nodeclaims", len(using), "first", using[0])
		return reconcile.Result{RequeueAfter: 10 * time.Second}, nil
	}
	if err := c.resolver.Cleanup(ctx, nc); err != nil {
		return reconcile.Result{}, fmt.Errorf("cleaning up after ec2nodeclass %s: %w", nc.Name, err)
	}
	patch := client.MergeFromWithOptions(nc.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(nc, Finalizer)
	if err := c.client.Patch(ctx, nc, patch); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	log.FromContext(ctx).Info("ec2nodeclass deleted; its instance profile and launch templates are removed", "ec2nodeclass", nc.Name)
	return reconcile.Result{}, nil
}
