package aws

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
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
	instances *instanceCache
	// specHashes memoizes each EC2NodeClass's spec hash by UID and
	// generation (the spec changes only with the generation): drift is
	// checked for every NodeClaim every round.
	specHashes sync.Map
}

type specHashKey struct {
	uid        types.UID
	generation int64
}

func (c *CloudProvider) specHash(class *awsv1.EC2NodeClass) string {
	key := specHashKey{class.UID, class.Generation}
	if h, ok := c.specHashes.Load(key); ok {
		return h.(string)
	}
	h := class.SpecHash()
	c.specHashes.Store(key, h)
	return h
}

// instanceListTTL is how long drift checks use one listing of the cluster's
// instances: one DescribeInstances a minute, not one per node.
const instanceListTTL = time.Minute

// instanceCache lists the cluster's instances at most once per TTL, one
// flight at a time, for drift checks.
type instanceCache struct {
	launcher *Launcher
	clock    clock.Clock

	mu           sync.Mutex
	at           time.Time
	byProviderID map[string]*cloudprovider.Instance
}

func (c *instanceCache) get(ctx context.Context, providerID string) (*cloudprovider.Instance, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byProviderID == nil || c.clock.Since(c.at) >= instanceListTTL {
		list, err := c.launcher.List(ctx)
		if err != nil {
			return nil, err
		}
		c.byProviderID = make(map[string]*cloudprovider.Instance, len(list))
		for _, inst := range list {
			c.byProviderID[inst.ProviderID] = inst
		}
		c.at = c.clock.Now()
	}
	return c.byProviderID[providerID], nil
}

var _ cloudprovider.CloudProvider = (*CloudProvider)(nil)

// New returns the provider; kube reads EC2NodeClasses (a cached client is fine).
func New(kube client.Reader, launcher *Launcher, offerings *Offerings) *CloudProvider {
	return &CloudProvider{kube: kube, launcher: launcher, offerings: offerings,
		instances: &instanceCache{launcher: launcher, clock: offerings.clock}}
}

// Create launches the NodeClaim's instance from its EC2NodeClass.
func (c *CloudProvider) Create(ctx context.Context, claim *v1.NodeClaim) (*cloudprovider.Instance, error) {
	class, err := c.readyClass(ctx, claim.Spec.NodeClassRef)
	if err != nil {
		return nil, err
	}
	inst, err := c.launcher.Launch(ctx, claim, class)
	if err != nil {
		return nil, err
	}
	inst.Annotations = map[string]string{awsv1.NodeClassHashAnnotationKey: c.specHash(class), awsv1.NodeClassHashVersionAnnotationKey: awsv1.NodeClassHashVersion}
	return inst, nil
}

// IsDrifted compares a NodeClaim with its EC2NodeClass as it is now: the
// spec's hash at launch, whether the resolved AMIs, subnets and security
// groups still include the instance's, and whether it is in the placement
// group the class names. A NodeClass that is not
// ready says nothing about drift.
func (c *CloudProvider) IsDrifted(ctx context.Context, claim *v1.NodeClaim) (cloudprovider.DriftReason, error) {
	class, err := c.readyClass(ctx, claim.Spec.NodeClassRef)
	if err != nil {
		if cloudprovider.IsNodeClassNotReady(err) {
			return "", nil
		}
		return "", err
	}
	if claim.Annotations[awsv1.NodeClassHashVersionAnnotationKey] == awsv1.NodeClassHashVersion &&
		claim.Annotations[awsv1.NodeClassHashAnnotationKey] != c.specHash(class) {
		return cloudprovider.NodeClassDrift, nil
	}
	if id := claim.Status.ImageID; id != "" && len(class.Status.AMIs) > 0 && !slices.ContainsFunc(class.Status.AMIs, func(a awsv1.AMI) bool { return a.ID == id }) {
		return cloudprovider.AMIDrift, nil
	}
	if claim.Status.ProviderID == "" {
		return "", nil
	}
	inst, err := c.instances.get(ctx, claim.Status.ProviderID)
	if err != nil || inst == nil {
		return "", err
	}
	if inst.Labels[LabelPlacementGroupID] != placementGroupOf(class) {
		return cloudprovider.PlacementGroupDrift, nil
	}
	if inst.SubnetID != "" && len(class.Status.Subnets) > 0 && !slices.ContainsFunc(class.Status.Subnets, func(s awsv1.Subnet) bool { return s.ID == inst.SubnetID }) {
		return cloudprovider.SubnetDrift, nil
	}
	if len(inst.SecurityGroupIDs) > 0 && len(class.Status.SecurityGroups) > 0 {
		want := make([]string, 0, len(class.Status.SecurityGroups))
		for _, g := range class.Status.SecurityGroups {
			want = append(want, g.ID)
		}
		have := slices.Clone(inst.SecurityGroupIDs)
		slices.Sort(want)
		slices.Sort(have)
		if !slices.Equal(want, have) {
			return cloudprovider.SecurityGroupDrift, nil
		}
	}
	return "", nil
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
	types, err := c.offerings.InstanceTypes(ctx, class)
	if err != nil {
		return nil, err
	}
	// Only types one of the class's images can boot: an arm64 type needs an
	// arm64 image, a GPU or Neuron type the accelerated one.
	images := Images(class)
	bootable := make([]*scheduling.InstanceType, 0, len(types))
	for _, it := range types {
		if images.For(it) != "" {
			bootable = append(bootable, it)
		}
	}
	return bootable, nil
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
