package aws

import (
	"context"
	"fmt"
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
	out := &cloudprovider.Instance{
		ID: aws.ToString(i.InstanceId), ProviderID: fmt.Sprintf("aws:///%s/%s", zone, aws.ToString(i.InstanceId)),
		InstanceType: string(i.InstanceType), Zone: zone, CapacityType: ct, ImageID: aws.ToString(i.ImageId), Labels: labels,
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
		return nil, fmt.Errorf("DescribeInstances %s: %w", id, err)
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
	var out []*cloudprovider.Instance
	pager := ec2.NewDescribeInstancesPaginator(l.ec2, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{
		{Name: aws.String("tag-key"), Values: []string{ClusterTag(l.cluster)}},
		{Name: aws.String("tag-key"), Values: []string{TagNodeClaim}},
		{Name: aws.String("instance-state-name"), Values: []string{"pending", "running", "stopping", "stopped"}},
	}})
	for pager.HasMorePages() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("DescribeInstances: %w", err)
		}
		for _, r := range page.Reservations {
			for _, i := range r.Instances {
				out = append(out, toInstance(i))
			}
		}
	}
	return out, nil
}

// Delete terminates an instance. It is idempotent: an instance already gone
// is success.
func (l *Launcher) Delete(ctx context.Context, providerID string) error {
	id, err := InstanceID(providerID)
	if err != nil {
		return err
	}
	if _, err := l.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}}); err != nil {
		if fe, ok := FromAPIError(err); ok && fe.Code == "InvalidInstanceID.NotFound" {
			return nil
		}
		return fmt.Errorf("TerminateInstances %s: %w", id, err)
	}
	return nil
}
