package aws

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

// NodePoolInstanceTypes answers what a NodePool can launch: the offerings of
// its EC2NodeClass, or an error saying why the pool cannot launch now.
type NodePoolInstanceTypes struct {
	Reader    client.Reader
	Offerings *Offerings
}

// InstanceTypes lists the pool's instance types.
func (n *NodePoolInstanceTypes) InstanceTypes(ctx context.Context, pool *v1.NodePool) ([]*scheduling.InstanceType, error) {
	ref := pool.Spec.Template.Spec.NodeClassRef
	if ref == nil || ref.Group != awsv1.Group || ref.Kind != "EC2NodeClass" {
		return nil, fmt.Errorf("nodeClassRef must name a %s EC2NodeClass", awsv1.Group)
	}
	class := &awsv1.EC2NodeClass{}
	if err := n.Reader.Get(ctx, client.ObjectKey{Name: ref.Name}, class); err != nil {
		return nil, fmt.Errorf("EC2NodeClass %s: %w", ref.Name, err)
	}
	if c := meta.FindStatusCondition(class.Status.Conditions, awsv1.ConditionReady); c == nil || c.Status != "True" {
		msg := "not resolved yet"
		if c != nil && c.Message != "" {
			msg = c.Message
		}
		return nil, fmt.Errorf("EC2NodeClass %s is not ready: %s", ref.Name, msg)
	}
	return n.Offerings.InstanceTypes(ctx, class)
}
