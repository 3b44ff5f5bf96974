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
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
	"github.com/backstop-sh/backstop/pkg/controllers"
)

// Resolver resolves a class's selector terms.
type Resolver interface {
	Resolve(ctx context.Context, nc *awsv1.EC2NodeClass) (awsv1.EC2NodeClassStatus, error)
}

// Controller resolves EC2NodeClasses and writes their status.
type Controller struct {
	client   client.Client
	resolver Resolver
	clock    clock.Clock
	// Every re-resolves ready classes, since subnets and images change outside Kubernetes.
	Every time.Duration
}

// New returns the controller.
func New(c client.Client, r Resolver, clk clock.Clock) *Controller {
	return &Controller{client: c, resolver: r, clock: clk, Every: 5 * time.Minute}
}

// Register adds the controller to the manager.
func (c *Controller) Register(mgr manager.Manager) error {
	return builder.ControllerManagedBy(mgr).Named("nodeclass.status").For(&awsv1.EC2NodeClass{}).WithOptions(controllers.Options()).Complete(c)
}

// Reconcile resolves one class.
func (c *Controller) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	nc := &awsv1.EC2NodeClass{}
	if err := c.client.Get(ctx, req.NamespacedName, nc); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
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
	return reconcile.Result{RequeueAfter: c.Every}, nil
}

func ready(s awsv1.EC2NodeClassStatus) bool {
	for _, c := range s.Conditions {
		if c.Type == awsv1.ConditionReady {
			return c.Status == "True"
		}
	}
	return false
}
