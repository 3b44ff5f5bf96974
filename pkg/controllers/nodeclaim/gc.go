package nodeclaim

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider"
)

// GarbageCollection reconciles the cloud with the API server both ways:
// instances tagged for this cluster whose NodeClaim is gone are terminated
// after a grace period (a launch in flight has no NodeClaim status yet), and
// NodeClaims whose instance is gone are deleted. Instances without our tags
// are never touched: List only returns the cluster's own.
type GarbageCollection struct {
	client client.Client
	cloud  cloudprovider.CloudProvider
	clock  clock.Clock
	Every  time.Duration
	Grace  time.Duration
	// ReservationLabels are the labels a node launched into a capacity
	// reservation carries while it runs in one (the cloud's names), taken
	// off when its instance leaves the reservation.
	ReservationLabels []string
}

// NewGarbageCollection returns the collector; it runs on the leader every minute.
func NewGarbageCollection(c client.Client, cloud cloudprovider.CloudProvider, clk clock.Clock) *GarbageCollection {
	return &GarbageCollection{client: c, cloud: cloud, clock: clk, Every: time.Minute, Grace: 30 * time.Second}
}

// NeedLeaderElection makes the collector run on the leader only.
func (g *GarbageCollection) NeedLeaderElection() bool { return true }

// Start runs the collector until ctx ends.
// The first round comes one interval after start, not at once: a controller
// that restarts often does not list every instance each time.
func (g *GarbageCollection) Start(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-g.clock.After(g.Every):
		}
		if err := g.Collect(ctx); err != nil {
			log.FromContext(ctx).Error(err, "garbage collection failed; trying again next round")
		}
	}
}

// Collect runs one round.
func (g *GarbageCollection) Collect(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("gc")
	var claims v1.NodeClaimList
	if err := g.client.List(ctx, &claims); err != nil {
		return err
	}
	names := sets.New[string]()
	for _, c := range claims.Items {
		names.Insert(c.Name)
	}
	instances, err := g.cloud.List(ctx)
	if err != nil {
		return err
	}
	live := sets.New[string]()
	byProviderID := make(map[string]*cloudprovider.Instance, len(instances))
	for _, inst := range instances {
		live.Insert(inst.ProviderID)
		byProviderID[inst.ProviderID] = inst
		owner := inst.Labels[v1.NodeClaimLabelKey]
		if names.Has(owner) || g.clock.Since(inst.LaunchTime) < g.Grace {
			continue
		}
		logger.Info("terminating an instance whose NodeClaim is gone", "instance", inst.ID, "nodeclaim", owner)
		if err := g.cloud.Delete(ctx, &v1.NodeClaim{Status: v1.NodeClaimStatus{ProviderID: inst.ProviderID}}); err != nil {
			return err
		}
	}
	for i := range claims.Items {
		c := &claims.Items[i]
		if inst := byProviderID[c.Status.ProviderID]; inst != nil && c.DeletionTimestamp == nil {
			if err := g.leftReservation(ctx, c, inst); err != nil {
				return err
			}
		}
		if c.Status.ProviderID == "" || c.DeletionTimestamp != nil || live.Has(c.Status.ProviderID) {
			continue
		}
		// Not in the list: confirm, since List and the claim may race.
		if _, err := g.cloud.Get(ctx, c.Status.ProviderID); !cloudprovider.IsNotFound(err) {
			continue
		}
		logger.Info("deleting a NodeClaim whose instance is gone", "nodeclaim", c.Name, "provider-id", c.Status.ProviderID)
		if err := g.client.Delete(ctx, c); client.IgnoreNotFound(err) != nil {
			return err
		}
	}
	return nil
}

// leftReservation relabels a reserved NodeClaim, and its Node, On-Demand
// once its instance runs outside the reservation (the reservation was
// cancelled or ended; the instance runs on, paid as On-Demand): from then
// on it is priced, consolidated and returned to Spot as what it is.
func (g *GarbageCollection) leftReservation(ctx context.Context, c *v1.NodeClaim, inst *cloudprovider.Instance) error {
	if c.Labels[v1.CapacityTypeLabelKey] != v1.CapacityTypeReserved || inst.CapacityType != v1.CapacityTypeOnDemand {
		return nil
	}
	relabel := func(obj client.Object) error {
		patch := client.MergeFrom(obj.DeepCopyObject().(client.Object))
		labels := obj.GetLabels()
		labels[v1.CapacityTypeLabelKey] = v1.CapacityTypeOnDemand
		for _, k := range g.ReservationLabels {
			delete(labels, k)
		}
		obj.SetLabels(labels)
		return client.IgnoreNotFound(g.client.Patch(ctx, obj, patch))
	}
	log.FromContext(ctx).WithName("gc").Info("instance left its capacity reservation; now On-Demand", "nodeclaim", c.Name, "provider-id", c.Status.ProviderID)
	if err := relabel(c); err != nil {
		return err
	}
	if c.Status.NodeName == "" {
		return nil
	}
	node := &corev1.Node{}
	if err := g.client.Get(ctx, client.ObjectKey{Name: c.Status.NodeName}, node); err != nil {
		return client.IgnoreNotFound(err)
	}
	if node.Labels[v1.CapacityTypeLabelKey] != v1.CapacityTypeReserved {
		return nil
	}
	return relabel(node)
}
