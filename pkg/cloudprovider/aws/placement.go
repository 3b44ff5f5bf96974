package aws

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
)

// LabelPlacementGroupID names the placement group a node runs in, and
// LabelPlacementGroupPartition its partition in a partition group
// (Karpenter's labels).
const (
	LabelPlacementGroupID        = awsv1.Group + "/placement-group-id"
	LabelPlacementGroupPartition = awsv1.Group + "/placement-group-partition"
)

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
		return pg, "", nil
	}
	return nil, fmt.Sprintf("spec.placementGroupSelector: EC2 knows no placement group with %s in this region; create it or name an existing one", what), nil
}
