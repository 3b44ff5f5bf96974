// Package fake is an in-memory cloudprovider.CloudProvider for controller
// unit tests: instances live in a map, errors are queued per call, and every
// call is counted, so a test states exactly what the cloud saw.
package fake

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

// CloudProvider is the fake. Its zero value is not usable; call New.
type CloudProvider struct {
	clock clock.Clock

	mu sync.Mutex
	// Types is what every NodePool can launch.
	Types []*scheduling.InstanceType
	// NotReady, by NodeClass name, makes that class not ready with the message.
	NotReady map[string]string
	// CreateErrors are returned by the next Create calls, one each, before
	// any instance is made; a nil entry lets that call succeed.
	CreateErrors []error
	// LaunchThenFail makes the next Create calls launch the instance and then
	// fail with the error, as a launch whose answer was lost.
	LaunchThenFail []error
	// Drifted, by NodeClaim name, is what IsDrifted answers.
	Drifted map[string]cloudprovider.DriftReason
	// Errors for the other calls, returned while set.
	GetError, ListError, DeleteError, InstanceTypesError error

	instances map[string]*cloudprovider.Instance
	next      int
	// prefix makes this fake's instance ids unlike every other fake's, as
	// EC2's are unique: suites sharing an API server must not find another
	// fake's Node by provider id.
	prefix string
	calls  map[string]int
}

var _ cloudprovider.CloudProvider = (*CloudProvider)(nil)

// New returns an empty fake cloud.
func New(clk clock.Clock) *CloudProvider {
	return &CloudProvider{clock: clk, prefix: fmt.Sprintf("%09x", rand.Uint64N(1<<36)), NotReady: map[string]string{}, instances: map[string]*cloudprovider.Instance{}, calls: map[string]int{}}
}

// Calls returns how often a method was called.
func (c *CloudProvider) Calls(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[method]
}

// Instances returns the live instances.
func (c *CloudProvider) Instances() []*cloudprovider.Instance {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*cloudprovider.Instance, 0, len(c.instances))
	for _, i := range c.instances {
		out = append(out, i)
	}
	return out
}

// Add puts an instance in the cloud, as if launched elsewhere.
func (c *CloudProvider) Add(inst *cloudprovider.Instance) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.instances[inst.ProviderID] = inst
}

func (c *CloudProvider) pop(queue *[]error) (error, bool) {
	if len(*queue) == 0 {
		return nil, false
	}
	err := (*queue)[0]
	*queue = (*queue)[1:]
	return err, true
}

// Create launches an instance for the claim, or returns the instance already
// launched for it (a real cloud finds it by the claim's tag).
func (c *CloudProvider) Create(_ context.Context, claim *v1.NodeClaim) (*cloudprovider.Instance, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls["Create"]++
	if err := c.nodeClassReady(claim.Spec.NodeClassRef); err != nil {
		return nil, err
	}
	for _, inst := range c.instances {
		if inst.Labels[v1.NodeClaimLabelKey] == claim.Name {
			return inst, nil
		}
	}
	if err, ok := c.pop(&c.CreateErrors); ok && err != nil {
		return nil, err
	}
	if len(c.Types) == 0 {
		return nil, &cloudprovider.InsufficientCapacityError{Cause: cloudprovider.Cause{Code: "NoAvailableOffering"}, Message: "the fake has no instance types"}
	}
	it := c.Types[0]
	c.next++
	zone, capacityType := "test-zone-a", v1.CapacityTypeOnDemand
	if len(it.Offerings) > 0 {
		zone, capacityType = it.Offerings[0].Zone, it.Offerings[0].CapacityType
	}
	id := fmt.Sprintf("i-%s%08x", c.prefix, c.next)
	inst := &cloudprovider.Instance{
		ID: id, ProviderID: "fake:///" + zone + "/" + id, InstanceType: it.Name, Zone: zone, CapacityType: capacityType,
		Capacity: it.Capacity.List(), Allocatable: it.Allocatable().List(), LaunchTime: c.clock.Now(), State: "running",
		Labels: map[string]string{v1.NodeClaimLabelKey: claim.Name, corev1.LabelInstanceTypeStable: it.Name},
	}
	c.instances[inst.ProviderID] = inst
	if err, ok := c.pop(&c.LaunchThenFail); ok && err != nil {
		return nil, err
	}
	return inst, nil
}

// Get returns an instance by provider id.
func (c *CloudProvider) Get(_ context.Context, providerID string) (*cloudprovider.Instance, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls["Get"]++
	if c.GetError != nil {
		return nil, c.GetError
	}
	inst, ok := c.instances[providerID]
	if !ok {
		return nil, &cloudprovider.NotFoundError{ID: providerID}
	}
	return inst, nil
}

// List returns every live instance.
func (c *CloudProvider) List(_ context.Context) ([]*cloudprovider.Instance, error) {
	c.mu.Lock()
	c.calls["List"]++
	err := c.ListError
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return c.Instances(), nil
}

// Delete removes the claim's instance, by provider id or by the claim's name.
func (c *CloudProvider) Delete(_ context.Context, claim *v1.NodeClaim) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls["Delete"]++
	if c.DeleteError != nil {
		return c.DeleteError
	}
	for id, inst := range c.instances {
		if id == claim.Status.ProviderID || (claim.Status.ProviderID == "" && inst.Labels[v1.NodeClaimLabelKey] == claim.Name) {
			delete(c.instances, id)
		}
	}
	return nil
}

// InstanceTypes returns Types, or why the pool's class is not ready.
func (c *CloudProvider) InstanceTypes(_ context.Context, pool *v1.NodePool) ([]*scheduling.InstanceType, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls["InstanceTypes"]++
	if err := c.nodeClassReady(pool.Spec.Template.Spec.NodeClassRef); err != nil {
		return nil, err
	}
	if c.InstanceTypesError != nil {
		return nil, c.InstanceTypesError
	}
	return c.Types, nil
}

// NodeClassReady fails for classes named in NotReady.
func (c *CloudProvider) NodeClassReady(_ context.Context, pool *v1.NodePool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodeClassReady(pool.Spec.Template.Spec.NodeClassRef)
}

// SetNotReady makes a NodeClass not ready with the message, or ready again
// with "", while the fake is in use.
func (c *CloudProvider) SetNotReady(class, message string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if message == "" {
		delete(c.NotReady, class)
		return
	}
	c.NotReady[class] = message
}

func (c *CloudProvider) nodeClassReady(ref *v1.NodeClassReference) error {
	if ref == nil {
		return &cloudprovider.NodeClassNotReadyError{Reason: "NodeClassNotSupported", Message: "no nodeClassRef"}
	}
	if msg, ok := c.NotReady[ref.Name]; ok {
		return &cloudprovider.NodeClassNotReadyError{Name: ref.Name, Reason: "NodeClassNotReady", Message: msg}
	}
	return nil
}

// IsDrifted answers from Drifted.
func (c *CloudProvider) IsDrifted(_ context.Context, claim *v1.NodeClaim) (cloudprovider.DriftReason, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls["IsDrifted"]++
	return c.Drifted[claim.Name], nil
}

// NodeClasses is empty: the fake needs no NodeClass objects.
func (c *CloudProvider) NodeClasses() []client.Object { return nil }
