package controllers_test

import (
	"testing"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/backstop-sh/backstop/pkg/controllers"
)

// An object that failed many times in a row, as while EC2 throttled, is tried
// again within a minute, and the first retry comes soon.
func TestBackoffIsCapped(t *testing.T) {
	limiter := controllers.Options().RateLimiter
	req := reconcile.Request{NamespacedName: types.NamespacedName{Name: "default"}}
	if first := limiter.When(req); first != controllers.FirstBackoff {
		t.Fatalf("first retry after %s, want %s", first, controllers.FirstBackoff)
	}
	for i := 2; i <= 30; i++ {
		if d := limiter.When(req); d > controllers.MaxBackoff {
			t.Fatalf("failure %d retried after %s, more than %s", i, d, controllers.MaxBackoff)
		}
	}
	limiter.Forget(req)
	if d := limiter.When(req); d != controllers.FirstBackoff {
		t.Fatalf("after a success the backoff starts again: got %s", d)
	}
}
