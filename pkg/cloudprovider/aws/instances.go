package aws

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider"
)

// InstanceID reads the instance id from a provider id aws:///<zone>/<id>.
func InstanceID(providerID string) (string, error) {
	parts := strings.Split(providerID, "/")
	if !strings.HasPrefix(providerID, "aws:///") || len(parts) != 5 || !strings.HasPrefix(parts[4], "i-") {
		return "", fmt.Errorf("provider id %q is not of the form aws:///<zone>/<instance-id>", providerID)
	}
	return parts[4], nil
}

func toInstance(i ec2types.Instance) *cloudprovider.Instance {
	zone := aws.ToString(i.Placement.AvailabilityZone)
	ct := v1.CapacityTypeOnDemand
	if i.InstanceLifecycle == ec2types.InstanceLifecycleTypeSpot {
		ct = v1.CapacityTypeSpot
	}
	labels := map[string]string{}
	for _, t := range i.Tags {
		labels[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	if p := i.Placement; p != nil && aws.ToString(p.GroupId) != "" {
		labels[LabelPlacementGroupID] = aws.ToString(p.GroupId)
		if n := aws.ToInt32(p.PartitionNumber); n > 0 {
			labels[LabelPlacementGroupPartition] = strconv.Itoa(int(n))
		}
	}
	if id := aws.ToString(i.CapacityReservationId); id != "" && ct == v1.CapacityTypeOnDemand {
		// An On-Demand instance running in a reservation.
		ct = v1.CapacityTypeReserved
		labels[LabelCapacityReservationID] = id
	}
	out := &cloudprovider.Instance{
		ID: aws.ToString(i.InstanceId), ProviderID: fmt.Sprintf("aws:///%s/%s", zone, aws.ToString(i.InstanceId)),
		InstanceType: string(i.InstanceType), Zone: zone, CapacityType: ct, ImageID: aws.ToString(i.ImageId), Labels: labels,
		SubnetID: aws.ToString(i.SubnetId),
	}
	for _, g := range i.SecurityGroups {
		out.SecurityGroupIDs = append(out.SecurityGroupIDs, aws.ToString(g.GroupId))
	}
	if i.LaunchTime != nil {
		out.LaunchTime = *i.LaunchTime
	}
	if i.State != nil {
		out.State = string(i.State.Name)
	}
	return out
}

// Get returns the instance of a provider id; a NotFoundError when it is gone
// or terminated.
func (l *Launcher) Get(ctx context.Context, providerID string) (*cloudprovider.Instance, error) {
	id, err := InstanceID(providerID)
	if err != nil {
		return nil, err
	}
	out, err := l.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		if fe, ok := FromAPIError(err); ok && fe.Code == "InvalidInstanceID.NotFound" {
			return nil, &cloudprovider.NotFoundError{ID: id}
		}
		return nil, retryable("DescribeInstances", err)
	}
	for _, r := range out.Reservations {
		for _, i := range r.Instances {
			if i.State != nil && (i.State.Name == ec2types.InstanceStateNameTerminated || i.State.Name == ec2types.InstanceStateNameShuttingDown) {
				return nil, &cloudprovider.NotFoundError{ID: id}
			}
			return toInstance(i), nil
		}
	}
	return nil, &cloudprovider.NotFoundError{ID: id}
}

// List returns the live instances tagged for this cluster.
func (l *Launcher) List(ctx context.Context) ([]*cloudprovider.Instance, error) {
	return l.find(ctx, ec2types.Filter{Name: aws.String("tag-key"), Values: []string{TagNodeClaim}})
}

// launchedFor returns the live instances launched for a NodeClaim.
func (l *Launcher) launchedFor(ctx context.Context, claim string) ([]*cloudprovider.Instance, error) {
	return l.find(ctx, ec2types.Filter{Name: aws.String("tag:" + TagNodeClaim), Values: []string{claim}})
}

// find lists the cluster's live instances that also match filter.
func (l *Launcher) find(ctx context.Context, filter ec2types.Filter) ([]*cloudprovider.Instance, error) {
	var out []*cloudprovider.Instance
	pager := ec2.NewDescribeInstancesPaginator(l.ec2, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{
		{Name: aws.String("tag-key"), Values: []string{ClusterTag(l.cluster)}},
		filter,
		{Name: aws.String("instance-state-name"), Values: []string{"pending", "running", "stopping", "stopped"}},
	}})
	for pager.HasMorePages() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, retryable("DescribeInstances", err)
		}
		for _, r := range page.Reservations {
			for _, i := range r.Instances {
				out = append(out, toInstance(i))
			}
		}
	}
	return out, nil
}

// Delete terminates the NodeClaim's instance: the one its provider id names,
// or, before it has one, any instance launched for it (a launch whose answer
// was lost). It is idempotent: an instance already gone is success.
func (l *Launcher) Delete(ctx context.Context, claim *v1.NodeClaim) error {
	l.mu.Lock()
	delete(l.refused, claim.UID)
	l.mu.Unlock()
	var ids []string
	if claim.Status.ProviderID != "" {
		id, err := InstanceID(claim.Status.ProviderID)
		if err != nil {
			return err
		}
		ids = append(ids, id)
	} else {
		found, err := l.launchedFor(ctx, claim.Name)
		if err != nil {
			return err
		}
		for _, inst := range found {
			ids = append(ids, inst.ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	out, err := l.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: ids})
	if err != nil {
		if fe, ok := FromAPIError(err); ok && fe.Code == "InvalidInstanceID.NotFound" {
			return nil
		}
		return retryable("TerminateInstances", err)
	}
	// The room of a reserved instance comes back once: when this call,
	// not an earlier one, began its termination.
	if reservation := claim.Labels[LabelCapacityReservationID]; reservation != "" {
		for _, t := range out.TerminatingInstances {
			if prev := t.PreviousState; prev != nil && (prev.Name == ec2types.InstanceStateNamePending || prev.Name == ec2types.InstanceStateNameRunning) {
				l.offerings.reservations.Terminated(reservation)
			}
		}
	}
	return nil
}
