package operator

import (
	"context"
	"fmt"
	"net/http"

	"github.com/go-logr/logr"
	eventsv1 "k8s.io/api/events/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	eventsv1client "k8s.io/client-go/kubernetes/typed/events/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// EventWriters bounds the Events written to the API server at once.
//
// client-go's events broadcaster writes each Event from a goroutine of its
// own, paced only by the client's rate limiter: a batch that nominates 500
// pods sent up to --kube-client-burst requests at once. An API server allows
// a client some number of streams on one HTTP/2 connection (100 for
// kube-apiserver's defaults here); the requests over it made Go dial a new
// TLS connection each — 123 in one 500-pod scale-up, each a handshake the
// busy API server had to serve and a few kilobytes of key material held
// here. Events wait their turn instead; nothing reads them to act.
const EventWriters = 4

// newEventRecorder starts Backstop's events broadcaster on its own client
// (sharing the manager's connections) with EventWriters writers, logs each
// event at debug level, as controller-runtime's recorder did, and stops it
// with the manager.
func newEventRecorder(mgr manager.Manager, cfg *rest.Config, httpClient *http.Client, scheme *kruntime.Scheme, logger logr.Logger) (events.EventRecorder, error) {
	cs, err := eventsv1client.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("creating the events client: %w", err)
	}
	broadcaster := events.NewBroadcaster(boundedSink{next: &events.EventSinkImpl{Interface: cs}, slots: make(chan struct{}, EventWriters)})
	// Recording starts now, not with the manager, so no event emitted
	// before every runnable has started is dropped.
	ctx, cancel := context.WithCancel(context.Background())
	if err := broadcaster.StartRecordingToSinkWithContext(ctx); err != nil {
		cancel()
		return nil, fmt.Errorf("starting the events broadcaster: %w", err)
	}
	stopLogging, err := broadcaster.StartLogging(logger.WithName("events").V(1))
	if err != nil {
		broadcaster.Shutdown()
		cancel()
		return nil, fmt.Errorf("logging events: %w", err)
	}
	stop := func() {
		stopLogging()
		broadcaster.Shutdown()
		cancel()
	}
	if err := mgr.Add(manager.RunnableFunc(func(run context.Context) error {
		<-run.Done()
		stop()
		return nil
	})); err != nil {
		stop()
		return nil, err
	}
	return broadcaster.NewRecorder(scheme, EventSource), nil
}

// boundedSink lets at most cap(slots) writes reach the API server at once.
type boundedSink struct {
	next  events.EventSink
	slots chan struct{}
}

// write runs one write once a slot is free, or gives up when ctx ends first.
func (s boundedSink) write(ctx context.Context, f func() (*eventsv1.Event, error)) (*eventsv1.Event, error) {
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.slots }()
	return f()
}

func (s boundedSink) Create(ctx context.Context, event *eventsv1.Event) (*eventsv1.Event, error) {
	return s.write(ctx, func() (*eventsv1.Event, error) { return s.next.Create(ctx, event) })
}

func (s boundedSink) Update(ctx context.Context, event *eventsv1.Event) (*eventsv1.Event, error) {
	return s.write(ctx, func() (*eventsv1.Event, error) { return s.next.Update(ctx, event) })
}

func (s boundedSink) Patch(ctx context.Context, old *eventsv1.Event, data []byte) (*eventsv1.Event, error) {
	return s.write(ctx, func() (*eventsv1.Event, error) { return s.next.Patch(ctx, old, data) })
}
