package aws

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
)

// LabelPlacementGroupID names the placement group a node runs in, and
// LabelPlacementGroupPartition its partition in a partition group
// (Karpenter's labels).
const (
	LabelPlacementGroupID        = awsv1.Group + "/placement-group-id"
	LabelPlacementGroupPartition = awsv1.Group + "/placement-group-partition"
)

// clusterZone is the zone of a cluster group's live instances (a cluster
// group cannot span zones), "" while it has none: launches elsewhere would
// only be refused.
func (r *Resolver) clusterZone(ctx context.Context, group string) (string, error) {
	out, err := r.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{
		{Name: aws.String("placement-group-name"), Values: []string{group}},
		{Name: aws.String("instance-state-name"), Values: []string{"pending", "running", "stopping", "stopped"}},
	}})
	if err != nil {
		return "", fmt.Errorf("DescribeInstances (placement group %s): %w", group, err)
	}
	for _, res := range out.Reservations {
		for _, i := range res.Instances {
			if i.Placement != nil && aws.ToString(i.Placement.AvailabilityZone) != "" {
				return aws.ToString(i.Placement.AvailabilityZone), nil
			}
		}
	}
	return "", nil
}

// placementGroup resolves the class's placement group selector: nil and no
// problem without one; a problem a user can act on when EC2 does not know
// the group or it is not available.
func (r *Resolver) placementGroup(ctx context.Context, sel *awsv1.PlacementGroupSelector) (*awsv1.PlacementGroup, string, error) {
	if sel == nil {
		return nil, "", nil
	}
	in := &ec2.DescribePlacementGroupsInput{}
	what := ""
	if id := aws.ToString(sel.ID); id != "" {
		in.GroupIds, what = []string{id}, "id "+id
	} else {
		in.GroupNames, what = []string{aws.ToString(sel.Name)}, "name "+aws.ToString(sel.Name)
	}
	out, err := r.ec2.DescribePlacementGroups(ctx, in)
	if err != nil {
		if fe, ok := FromAPIError(err); ok && (fe.Code == "InvalidPlacementGroup.Unknown" || fe.Code == "InvalidPlacementGroupId.NotFound" ||
			fe.Code == "InvalidPlacementGroupId.Malformed") {
			return nil, fmt.Sprintf("spec.placementGroupSelector: EC2 knows no placement group with %s in this region (%s); create it or name an existing one", what, fe.Code), nil
		}
		return nil, "", fmt.Errorf("DescribePlacementGroups: %w", err)
	}
	for _, g := range out.PlacementGroups {
		if state := string(g.State); state != "available" {
			return nil, fmt.Sprintf("spec.placementGroupSelector: placement group %s is %s, not available", aws.ToString(g.GroupId), state), nil
		}
		pg := &awsv1.PlacementGroup{ID: aws.ToString(g.GroupId), Name: aws.ToString(g.GroupName), Strategy: string(g.Strategy),
			PartitionCount: aws.ToInt32(g.PartitionCount), SpreadLevel: string(g.SpreadLevel)}
		if pg.Strategy == awsv1.PlacementStrategyCluster {
			if pg.Zone, err = r.clusterZone(ctx, pg.Name); err != nil {
				return nil, "", err
			}
		}
		return pg, "", nil
	}
	return nil, fmt.Sprintf("spec.placementGroupSelector: EC2 knows no placement group with %s in this region; create it or name an existing one", what), nil
}
