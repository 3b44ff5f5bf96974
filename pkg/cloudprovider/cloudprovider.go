// Package cloudprovider is the one boundary between Backstop's generic
// controllers and a cloud: the CloudProvider interface, what a launched
// instance is, and the typed errors a call can end with, so controllers act
// without knowing the cloud. Generic controllers import this package, never a
// cloud's API types.
package cloudprovider

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

// CloudProvider launches, finds and removes the machines behind NodeClaims and
// says what a NodePool can launch. An implementation resolves the NodePool's
// NodeClass itself.
type CloudProvider interface {
	// Create launches the instance for a NodeClaim. It is idempotent: when an
	// earlier call may have launched one, that instance is returned.
	Create(ctx context.Context, claim *v1.NodeClaim) (*Instance, error)
	// Get returns the instance of a provider id; a NotFoundError when it is gone.
	Get(ctx context.Context, providerID string) (*Instance, error)
	// List returns the live instances launched for this cluster.
	List(ctx context.Context) ([]*Instance, error)
	// Delete terminates the NodeClaim's instance: the one of its provider id,
	// or, when it has none yet, any launched for it. An instance already gone
	// is success.
	Delete(ctx context.Context, claim *v1.NodeClaim) error
	// InstanceTypes lists what the NodePool can launch; a NodeClassNotReadyError
	// when its NodeClass cannot be launched from, another error when the
	// cloud could not be asked.
	InstanceTypes(ctx context.Context, pool *v1.NodePool) ([]*scheduling.InstanceType, error)
	// NodeClassReady returns nil when the NodePool's NodeClass can be launched
	// from, else a NodeClassNotReadyError saying why.
	NodeClassReady(ctx context.Context, pool *v1.NodePool) error
	// NodeClasses are the NodeClass kinds this provider serves, for
	// controllers that must react to them.
	NodeClasses() []client.Object
	// IsDrifted says why a launched NodeClaim's instance no longer matches
	// its NodeClass ("" when it does): the NodeClass changed since launch,
	// or what its selectors resolve to no longer includes the instance's
	// image, subnet or security groups.
	IsDrifted(ctx context.Context, claim *v1.NodeClaim) (DriftReason, error)
}

// DriftReason is why a NodeClaim drifted: the reason of its Drifted condition.
type DriftReason string

// Drift reasons of the cloud's making.
const (
	NodeClassDrift     DriftReason = "NodeClassDrift"
	AMIDrift           DriftReason = "AMIDrift"
	SubnetDrift        DriftReason = "SubnetDrift"
	SecurityGroupDrift DriftReason = "SecurityGroupDrift"
	// PlacementGroupDrift: the instance is not in the placement group its
	// class names now (or is in one the class no longer names).
	PlacementGroupDrift DriftReason = "PlacementGroupDrift"
)

// CreatedByAnnotation names, on a NodeClaim, the controller process that
// created it. A provider launching a NodeClaim another process created asks
// the cloud first whether that process already launched it.
const CreatedByAnnotation = "backstop.sh/created-by"

// Instance is a launched machine.
type Instance struct {
	ProviderID   string
	ID           string
	InstanceType string
	Zone         string
	CapacityType string
	ImageID      string
	Capacity     corev1.ResourceList
	Allocatable  corev1.ResourceList
	Labels       map[string]string
	// Annotations are written onto the NodeClaim at launch (the NodeClass
	// hash its drift is judged by).
	Annotations map[string]string
	// SubnetID and SecurityGroupIDs are where the instance is attached.
	SubnetID         string
	SecurityGroupIDs []string
	LaunchTime       time.Time
	State            string
}

// Cause is what the cloud said: its error code and request id, and the error
// itself. The typed errors embed it, so each keeps what a person needs to
// look the failure up.
type Cause struct {
	// Code is the cloud's error code, such as InsufficientInstanceCapacity.
	Code string
	// RequestID is the cloud's id of the failed request, when it answered.
	RequestID string
	// Err is the underlying error.
	Err error
}

// Unwrap returns the underlying error.
func (c Cause) Unwrap() error { return c.Err }

func (c Cause) suffix() string {
	if c.RequestID == "" {
		return ""
	}
	return " (request id " + c.RequestID + ")"
}

// InsufficientCapacityError means nothing the NodeClaim allows could be bought
// now. What ran out is already marked unavailable, so planning again at once
// moves on: to other Spot types, then to the next pool.
type InsufficientCapacityError struct {
	Cause
	Message string
	// ClosedCapacityType is set when a whole capacity type is closed for the
	// account (a quota used up, a missing service-linked role), not just some
	// offerings.
	ClosedCapacityType string
}

func (e *InsufficientCapacityError) Error() string {
	return fmt.Sprintf("insufficient capacity (%s): %s%s", e.Code, e.Message, e.suffix())
}

// ConfigurationError means the NodeClass or the account is misconfigured;
// retrying will not help until a person fixes it. Message names the fix.
type ConfigurationError struct {
	Cause
	Message string
}

func (e *ConfigurationError) Error() string {
	return fmt.Sprintf("configuration error (%s): %s%s", e.Code, e.Message, e.suffix())
}

// RetryableError is a passing fault (throttling, 5xx, a network error); try
// again after a backoff.
type RetryableError struct {
	Cause
	// Operation is what failed, such as CreateFleet.
	Operation string
	// RetryAfter, when set, is when to try again: the cloud knows the fault
	// lasts about that long (an identity not yet visible), so the caller
	// says so and waits rather than backing off from milliseconds.
	RetryAfter time.Duration
}

func (e *RetryableError) Error() string {
	return fmt.Sprintf("%s failed, will retry (%s): %v%s", e.Operation, e.Code, e.Err, e.suffix())
}

// NodeClassNotReadyError means a NodeClaim's or NodePool's NodeClass cannot be
// launched from yet: it is missing, or its selectors did not resolve.
type NodeClassNotReadyError struct {
	Name    string
	Reason  string
	Message string
}

func (e *NodeClassNotReadyError) Error() string { return e.Message }

// NotFoundError means the instance no longer exists.
type NotFoundError struct{ ID string }

func (e *NotFoundError) Error() string { return "instance " + e.ID + " not found" }

// IsInsufficientCapacity reports whether err is, or wraps, an InsufficientCapacityError.
func IsInsufficientCapacity(err error) bool {
	var e *InsufficientCapacityError
	return errors.As(err, &e)
}

// IsNotFound reports whether err is, or wraps, a NotFoundError.
func IsNotFound(err error) bool {
	var e *NotFoundError
	return errors.As(err, &e)
}

// IsNodeClassNotReady reports whether err is, or wraps, a NodeClassNotReadyError.
func IsNodeClassNotReady(err error) bool {
	var e *NodeClassNotReadyError
	return errors.As(err, &e)
}

// CauseOf is the cloud's code and request id carried by err, if any.
func CauseOf(err error) Cause {
	var ice *InsufficientCapacityError
	var cfg *ConfigurationError
	var retry *RetryableError
	switch {
	case errors.As(err, &ice):
		return ice.Cause
	case errors.As(err, &cfg):
		return cfg.Cause
	case errors.As(err, &retry):
		return retry.Cause
	}
	return Cause{Err: err}
}
