package nodepool_test

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/backstop-sh/backstop/pkg/controllers/nodepool"
)

func TestRegistrationHealthWindow(t *testing.T) {
	h := &nodepool.RegistrationHealth{}
	expect := func(step string, want metav1.ConditionStatus, wantOK bool) {
		t.Helper()
		got, _, _, ok := h.Status("batch")
		if ok != wantOK || got != want {
			t.Fatalf("%s: status %q (judged %v), want %q (judged %v)", step, got, ok, want, wantOK)
		}
	}
	expect("nothing recorded", "", false)
	h.Failed("batch", "RegistrationFailed", "first")
	expect("one failure alone says nothing yet", "", false)
	h.Registered("batch")
	expect("a registration", metav1.ConditionTrue, true)
	h.Failed("batch", "LaunchFailed", "second")
	expect("two failures of three", metav1.ConditionFalse, true)
	if _, reason, message, _ := h.Status("batch"); reason != "LaunchFailed" || message != "second" {
		t.Fatalf("False says the last failure: %s %s", reason, message)
	}
	h.Registered("batch")
	h.Registered("batch")
	expect("the first failure left the window of four, one is left", metav1.ConditionTrue, true)
	h.Failed("batch", "RegistrationFailed", "third")
	expect("two failures in the last four", metav1.ConditionFalse, true)
	if _, _, _, ok := h.Status("other"); ok {
		t.Fatal("pools are judged apart")
	}
}

func TestRegistrationHealthGenerations(t *testing.T) {
	h := &nodepool.RegistrationHealth{}
	h.Registered("batch")
	h.Observe("batch", 3, 7)
	if st, _, _, _ := h.Status("batch"); st != metav1.ConditionTrue {
		t.Fatalf("an outcome recorded before the first generations were told is kept, got %q", st)
	}
	h.Observe("batch", 2, 7)
	if st, _, _, _ := h.Status("batch"); st != metav1.ConditionTrue {
		t.Fatalf("an older generation (a stale cache) forgets nothing, got %q", st)
	}
	h.Observe("batch", 3, 8)
	if _, _, _, ok := h.Status("batch"); ok {
		t.Fatal("a newer NodeClass generation forgets the outcomes")
	}
	h.Failed("batch", "RegistrationFailed", "x")
	h.Failed("batch", "RegistrationFailed", "y")
	h.Observe("batch", 4, 8)
	if _, _, _, ok := h.Status("batch"); ok {
		t.Fatal("a newer NodePool generation forgets the outcomes")
	}
	var none *nodepool.RegistrationHealth
	none.Registered("batch")
	none.Observe("batch", 1, 1)
	if _, _, _, ok := none.Status("batch"); ok {
		t.Fatal("a nil tracker judges nothing")
	}
}

// An outcome arrives after the NodeClaim write that led to it, whose event
// may have had the pool judged already: the source queues the pool again.
func TestRegistrationHealthSourceQueuesChangedPools(t *testing.T) {
	h := &nodepool.RegistrationHealth{}
	h.Registered("before-start") // told before the controller started
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	defer q.ShutDown()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := h.Source().Start(ctx, q); err != nil {
		t.Fatal(err)
	}
	h.Registered("batch")
	h.Failed("batch", "RegistrationFailed", "again")
	h.Failed("fallback", "LaunchFailed", "no capacity")
	want := map[string]bool{"before-start": true, "batch": true, "fallback": true}
	got := map[string]bool{}
	deadline := time.After(10 * time.Second)
	for len(got) < len(want) {
		items := make(chan reconcile.Request)
		go func() {
			if item, shutdown := q.Get(); !shutdown {
				q.Done(item)
				items <- item
			}
		}()
		select {
		case item := <-items:
			if !want[item.Name] {
				t.Fatalf("queued %q, which had no outcome", item.Name)
			}
			got[item.Name] = true
		case <-deadline:
			t.Fatalf("queued %v, want every pool of %v", got, want)
		}
	}
}
