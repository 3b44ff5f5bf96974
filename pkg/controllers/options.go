// Package controllers holds what every Backstop controller shares.
package controllers

import (
	"time"

	"golang.org/x/time/rate"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// Retry backoff of a failed reconcile: per object, from FirstBackoff doubling
// to MaxBackoff.
const (
	FirstBackoff = 100 * time.Millisecond
	MaxBackoff   = time.Minute
)

// Options are the options every controller starts from. controller-runtime's
// own backoff grows to 1,000 s, so an object that failed a dozen times while
// EC2 throttled would wait a quarter of an hour after EC2 recovered; here it
// waits a minute at most. All objects together are retried at most 10 per
// second after a burst of 100, as controller-runtime does.
func Options() controller.Options {
	return controller.Options{RateLimiter: workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](FirstBackoff, MaxBackoff),
		&workqueue.TypedBucketRateLimiter[reconcile.Request]{Limiter: rate.NewLimiter(rate.Limit(10), 100)},
	)}
}

// NodeWorkers is how many nodes a per-node controller (registration,
// termination) works on at once: in a scale-up of hundreds of nodes each
// waits on API calls, and one at a time left pods waiting for a minute
// after their nodes had joined.
const NodeWorkers = 20

// ParallelOptions are Options with n objects reconciled at once; one object
// is never reconciled twice at the same time.
func ParallelOptions(n int) controller.Options {
	o := Options()
	o.MaxConcurrentReconciles = n
	return o
}
