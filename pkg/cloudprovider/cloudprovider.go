// Package cloudprovider is the narrow boundary between Backstop's generic
// controllers and a cloud: what a launched instance is, and the typed errors a
// launch can end with, so controllers can act without knowing the cloud.
package cloudprovider

import (
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
)

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
	LaunchTime   time.Time
	State        string
}

// InsufficientCapacityError means nothing the NodeClaim allows could be bought
// now. What ran out is already marked unavailable, so planning again at once
// moves on: to other Spot types, then to the next pool.
type InsufficientCapacityError struct {
	// Reason is the EC2 error code, such as InsufficientInstanceCapacity.
	Reason  string
	Message string
}

func (e *InsufficientCapacityError) Error() string {
	return fmt.Sprintf("insufficient capacity (%s): %s", e.Reason, e.Message)
}

// ConfigurationError means the NodeClass or the account is misconfigured;
// retrying will not help until a person fixes it.
type ConfigurationError struct {
	Reason  string
	Message string
}

func (e *ConfigurationError) Error() string {
	return fmt.Sprintf("configuration error (%s): %s", e.Reason, e.Message)
}

// RetryableError is a passing fault (throttling, 5xx); try again after a backoff.
type RetryableError struct {
	Reason string
	Err    error
}

func (e *RetryableError) Error() string { return fmt.Sprintf("retryable (%s): %v", e.Reason, e.Err) }

// Unwrap returns the cause.
func (e *RetryableError) Unwrap() error { return e.Err }

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
