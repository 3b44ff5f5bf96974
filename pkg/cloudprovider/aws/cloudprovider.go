package aws

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

// CloudProvider is Backstop's cloudprovider.CloudProvider on AWS: it resolves
// a NodeClaim's or NodePool's EC2NodeClass and hands the work to the launcher
// and the offerings.
type CloudProvider struct {
	kube      client.Reader
	launcher  *Launcher
	offerings *Offerings
}

var _ cloudprovider.CloudProvider = (*CloudProvider)(nil)

// New returns the provider; kube reads EC2NodeClasses (a cached client is fine).
func New(kube client.Reader, launcher *Launcher, offerings *Offerings) *CloudProvider {
	return &CloudProvider{kube: kube, launcher: launcher, offerings: offerings}
}

// Create launches the NodeClaim's instance from its EC2NodeClass.
func (c *CloudProvider) Create(ctx context.Context, claim *v1.NodeClaim) (*cloudprovider.Instance, error) {
	class, err := c.readyClass(ctx, claim.Spec.NodeClassRef)
	if err != nil {
		return nil, err
	}
	return c.launcher.Launch(ctx, claim, class)
}

// Get returns the instance of a provider id.
func (c *CloudProvider) Get(ctx context.Context, providerID string) (*cloudprovider.Instance, error) {
	return c.launcher.Get(ctx, providerID)
}

// List returns the cluster's live instances.
func (c *CloudProvider) List(ctx context.Context) ([]*cloudprovider.Instance, error) {
	return c.launcher.List(ctx)
}

// Delete terminates the NodeClaim's instance.
func (c *CloudProvider) Delete(ctx context.Context, claim *v1.NodeClaim) error {
	return c.launcher.Delete(ctx, claim)
}

// InstanceTypes lists what the pool's EC2NodeClass can launch.
func (c *CloudProvider) InstanceTypes(ctx context.Context, pool *v1.NodePool) ([]*scheduling.InstanceType, error) {
	class, err := c.readyClass(ctx, pool.Spec.Template.Spec.NodeClassRef)
	if err != nil {
		return nil, err
	}
	return c.offerings.InstanceTypes(ctx, class)
}

// NodeClassReady says whether the pool's EC2NodeClass can be launched from.
func (c *CloudProvider) NodeClassReady(ctx context.Context, pool *v1.NodePool) error {
	_, err := c.readyClass(ctx, pool.Spec.Template.Spec.NodeClassRef)
	return err
}

// NodeClasses is the EC2NodeClass kind.
func (c *CloudProvider) NodeClasses() []client.Object { return []client.Object{&awsv1.EC2NodeClass{}} }

// readyClass reads the EC2NodeClass a reference names and checks it resolved.
func (c *CloudProvider) readyClass(ctx context.Context, ref *v1.NodeClassReference) (*awsv1.EC2NodeClass, error) {
	if ref == nil || ref.Group != awsv1.Group || ref.Kind != "EC2NodeClass" {
		return nil, &cloudprovider.NodeClassNotReadyError{Reason: "NodeClassNotSupported",
			Message: fmt.Sprintf("nodeClassRef must name a %s EC2NodeClass", awsv1.Group)}
	}
	class := &awsv1.EC2NodeClass{}
	if err := c.kube.Get(ctx, client.ObjectKey{Name: ref.Name}, class); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &cloudprovider.NodeClassNotReadyError{Name: ref.Name, Reason: "NodeClassNotFound",
				Message: fmt.Sprintf("EC2NodeClass %s does not exist", ref.Name)}
		}
		return nil, fmt.Errorf("reading EC2NodeClass %s: %w", ref.Name, err)
	}
	if c := meta.FindStatusCondition(class.Status.Conditions, awsv1.ConditionReady); c == nil || c.Status != "True" {
		msg := "not resolved yet"
		if c != nil && c.Message != "" {
			msg = c.Message
		}
		return nil, &cloudprovider.NodeClassNotReadyError{Name: ref.Name, Reason: "NodeClassNotReady",
			Message: fmt.Sprintf("EC2NodeClass %s is not ready: %s", ref.Name, msg)}
	}
	return class, nil
}
