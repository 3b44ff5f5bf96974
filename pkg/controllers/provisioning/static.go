package provisioning

import (
	"context"
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

// Filled is what Fill did for a static NodePool.
type Filled struct {
	// Created are the NodeClaims created.
	Created []*v1.NodeClaim
	// Short says why fewer than asked were planned ("" when all were):
	// the pool's EC2NodeClass is not ready, its limits.nodes is reached,
	// no instance type meets its requirements.
	Short string
}

// Fill creates n NodeClaims of a static NodePool, without pods: planned
// like any other NodeClaim (the pool's requirements, its cheapest instance
// types, the DaemonSet overhead, capacity reservations' room), within the
// pool's limits.nodes counting live NodeClaims already. They count as
// in-flight capacity for pending pods from the moment they are named, and
// are launched by the launch controller like any other.
func (p *Provisioner) Fill(ctx context.Context, pool *v1.NodePool, n, live int) (Filled, error) {
	sp, err := schedulingPool(pool)
	if err != nil {
		return Filled{Short: err.Error()}, nil
	}
	types, err := p.cloud.InstanceTypes(ctx, pool)
	if cloudprovider.IsNodeClassNotReady(err) {
		return Filled{Short: err.Error()}, nil
	}
	if err != nil {
		return Filled{}, fmt.Errorf("listing instance types for nodepool %s: %w", pool.Name, err)
	}
	sp.InstanceTypes, sp.Nodes = types, int64(live)
	var daemonSets appsv1.DaemonSetList
	if err := p.client.List(ctx, &daemonSets); err != nil {
		return Filled{}, fmt.Errorf("listing daemonsets: %w", err)
	}
	var claims v1.NodeClaimList
	if err := p.client.List(ctx, &claims, client.UnsafeDisableDeepCopy); err != nil {
		return Filled{}, fmt.Errorf("listing nodeclaims: %w", err)
	}
	inFlight := map[string]int{}
	for i := range claims.Items {
		if id := reservedUnlaunched(&claims.Items[i]); id != "" {
			inFlight[id]++
		}
	}
	plan := scheduling.Solve(&scheduling.Input{
		NodePools: []*scheduling.NodePool{sp}, DaemonSetPods: daemonSetPods(daemonSets.Items),
		ReservedInFlight: inFlight, Fill: map[string]int{pool.Name: n},
	})
	reserved := make([]reservation, 0, len(plan.NewNodeClaims))
	for _, nc := range plan.NewNodeClaims {
		claim := p.newClaim(pool, nc, nil)
		p.countCreated(claim)
		reserved = append(reserved, reservation{planned: nc, claim: claim})
	}
	errs := p.postAll(ctx, reserved)
	out := Filled{Short: plan.Unfilled[pool.Name]}
	for _, r := range reserved {
		if r.posted {
			out.Created = append(out.Created, r.claim)
		}
	}
	return out, errors.Join(errs...)
}
