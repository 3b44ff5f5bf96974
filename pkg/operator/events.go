package operator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/validation"
	eventsv1client "k8s.io/client-go/kubernetes/typed/events/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/reference"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

const (
	// EventWriters bounds the Events written to the API server at once.
	//
	// An API server allows a client some number of streams on one HTTP/2
	// connection (100 for kube-apiserver's defaults here); when a batch that
	// nominated 500 pods wrote its events all at once, the requests over that
	// made Go dial a new TLS connection each — 123 in one 500-pod scale-up,
	// each a handshake the busy API server had to serve. Nothing reads events
	// to act, so they wait their turn.
	EventWriters = 4
	// EventQueue bounds the events waiting for a writer; an event recorded
	// while the queue is full is dropped (and counted in the log). A
	// 2,000-pod scale-up records about 2,500 events within seconds; a queued
	// event holds a few hundred bytes.
	EventQueue = 10000
	// EventSeriesEnd is how long an event may go without repeating and still
	// be counted on the Event already written: a repeat after that writes a
	// new Event.
	EventSeriesEnd = 6 * time.Minute
	// EventSeriesPatch is how often at most a series' count is written back.
	EventSeriesPatch = 30 * time.Second

	// eventsSwept is how often series are written back, retried and
	// forgotten.
	eventsSwept = 5 * time.Second
	// eventRetry is how long a write that failed for a reason worth retrying
	// waits, and eventTries how often it is tried in all.
	eventRetry = 10 * time.Second
	eventTries = 12
	// eventSeries bounds the series remembered; beyond it an event is still
	// written, once, without being counted.
	eventSeries = 10000
	// eventNote is the API server's limit on an Event's note, in bytes.
	eventNote = 1024
)

// Recorder writes Backstop's events as events.k8s.io/v1 Events.
//
// An event becomes a queued write (at most EventQueue of them), served by
// EventWriters goroutines, and a repeat of one written in the last
// EventSeriesEnd — the same object, type, reason, action, related object and
// note — becomes a count on its Event's series, written back at most every
// EventSeriesPatch. client-go's events broadcaster, used before, started a
// goroutine for every event and kept a copy of each for six minutes: in a
// 500-pod scale-up hundreds of goroutines waited for the writers, each with
// its stack and two copies of its event, about a tenth of the controller's
// peak memory. Every event is also logged at debug level.
type Recorder struct {
	events     eventsv1client.EventsV1Interface
	scheme     *kruntime.Scheme
	clock      clock.Clock
	log        logr.Logger
	controller string
	instance   string
	queue      chan *series

	mu      sync.Mutex
	series  map[eventKey]*series
	dropped int
}

// eventKey is what makes two events one series. The object's resource
// version is not part of it: an object's events stay one series however often
// it changes.
type eventKey struct {
	regarding, related              corev1.ObjectReference
	eventType, reason, action, note string
}

// series is one Event and the repeats counted on it.
type series struct {
	key   eventKey
	name  string
	first time.Time
	last  time.Time
	count int32
	// written is the count the API server has: 0 until the Event is
	// created.
	written int32
	wrote   time.Time
	// busy: queued or being written; a series is in the queue at most once.
	busy     bool
	failures int
	retryAt  time.Time
}

// NewRecorder returns a Recorder writing through client; Run writes.
func NewRecorder(client eventsv1client.EventsV1Interface, scheme *kruntime.Scheme, clk clock.Clock, log logr.Logger, controller string) *Recorder {
	hostname, _ := os.Hostname()
	return &Recorder{
		events: client, scheme: scheme, clock: clk, log: log, controller: controller,
		instance: truncate(controller+"-"+hostname, 128),
		queue:    make(chan *series, EventQueue),
		series:   map[eventKey]*series{},
	}
}

// newEventRecorder starts a Recorder on its own client (sharing the
// manager's connections) and stops it with the manager. Writing starts now,
// not with the manager, so no event emitted before every runnable has started
// waits for them.
func newEventRecorder(mgr manager.Manager, cfg *rest.Config, httpClient *http.Client, scheme *kruntime.Scheme, clk clock.Clock, log logr.Logger) (*Recorder, error) {
	cs, err := eventsv1client.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("creating the events client: %w", err)
	}
	r := NewRecorder(cs, scheme, clk, log.WithName("events"), EventSource)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	if err := mgr.Add(manager.RunnableFunc(func(run context.Context) error {
		<-run.Done()
		cancel()
		<-done
		return nil
	})); err != nil {
		cancel()
		return nil, err
	}
	return r, nil
}

// Eventf records an event about regarding (and related, when not nil).
func (r *Recorder) Eventf(regarding, related kruntime.Object, eventType, reason, action, note string, args ...any) {
	if eventType != corev1.EventTypeNormal && eventType != corev1.EventTypeWarning {
		r.log.Error(nil, "not recording an event of an unknown type: use Normal or Warning", "type", eventType, "reason", reason)
		return
	}
	ref, err := reference.GetReference(r.scheme, regarding)
	if err != nil {
		r.log.Error(err, "not recording an event: its object has no reference", "reason", reason)
		return
	}
	key := eventKey{regarding: *ref, eventType: eventType, reason: reason, action: action, note: truncate(fmt.Sprintf(note, args...), eventNote)}
	key.regarding.ResourceVersion = ""
	if related != nil {
		rel, err := reference.GetReference(r.scheme, related)
		if err != nil {
			r.log.Error(err, "not recording an event: its related object has no reference", "reason", reason)
			return
		}
		key.related = *rel
		key.related.ResourceVersion = ""
	}
	if log := r.log.V(1); log.Enabled() {
		log.Info("event", "object", types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}.String(), "kind", ref.Kind,
			"apiVersion", ref.APIVersion, "type", eventType, "reason", reason, "action", action, "note", key.note)
	}
	now := r.clock.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.series[key]; s != nil && now.Sub(s.last) < EventSeriesEnd {
		s.count++
		s.last = now
		if s.written > 0 && s.failures == 0 && now.Sub(s.wrote) >= EventSeriesPatch {
			r.push(s)
		}
		return
	}
	s := &series{key: key, name: eventName(ref.Name, now), first: now, last: now, count: 1}
	if !r.push(s) {
		r.dropped++
		return
	}
	if len(r.series) < eventSeries {
		r.series[key] = s
	}
}

// push queues s unless it is queued or being written already, or the queue
// is full (a series already remembered is then queued by a later sweep); it
// says whether s is (now) queued or being written. r.mu is held.
func (r *Recorder) push(s *series) bool {
	if s.busy {
		return true
	}
	select {
	case r.queue <- s:
		s.busy = true
		return true
	default:
		return false
	}
}

// Run writes queued events with EventWriters goroutines, and writes back,
// retries and forgets series every few seconds, until ctx is done.
func (r *Recorder) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for range EventWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case s := <-r.queue:
					r.write(ctx, s)
				}
			}
		}()
	}
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-r.clock.After(eventsSwept):
			r.sweep()
		}
	}
}

// sweep queues the series whose count is due to be written back or whose
// retry is due, forgets those that ended, and logs the events dropped since
// the last sweep.
func (r *Recorder) sweep() {
	now := r.clock.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for key, s := range r.series {
		switch {
		case s.busy:
		case s.failures > 0:
			if !now.Before(s.retryAt) {
				r.push(s)
			}
		case s.count > s.written:
			if now.Sub(s.wrote) >= EventSeriesPatch {
				r.push(s)
			}
		case now.Sub(s.last) >= EventSeriesEnd:
			delete(r.series, key)
		}
	}
	if r.dropped > 0 {
		r.log.Info("dropped events: more were waiting to be written than the queue holds", "dropped", r.dropped, "queue", EventQueue)
		r.dropped = 0
	}
}

// write creates s's Event or patches its series with the count recorded so
// far; a write that failed for a reason worth retrying is retried by sweep.
func (r *Recorder) write(ctx context.Context, s *series) {
	r.mu.Lock()
	count, last, written := s.count, s.last, s.written
	r.mu.Unlock()
	err := r.send(ctx, s, count, last, written)
	r.mu.Lock()
	defer r.mu.Unlock()
	s.busy = false
	s.wrote = r.clock.Now()
	switch {
	case err == nil:
		s.written, s.failures = count, 0
	case ctx.Err() != nil:
	case retryable(err) && s.failures+1 < eventTries:
		s.failures++
		s.retryAt = s.wrote.Add(eventRetry)
	default:
		r.log.Error(err, "not writing an event", "object", s.key.regarding.Name, "namespace", s.key.regarding.Namespace,
			"reason", s.key.reason, "tries", s.failures+1)
		if r.series[s.key] == s {
			delete(r.series, s.key)
		}
	}
}

func (r *Recorder) send(ctx context.Context, s *series, count int32, last time.Time, written int32) error {
	events := r.events.Events(namespaceOf(s.key.regarding))
	if written > 0 {
		patch := fmt.Sprintf(`{"series":{"count":%d,"lastObservedTime":%q}}`, count, last.UTC().Format(metav1.RFC3339Micro))
		_, err := events.Patch(ctx, s.name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		if !apierrors.IsNotFound(err) {
			return err
		}
		// The API server let the Event expire while its series went on.
	}
	_, err := events.Create(ctx, r.event(s, count, last), metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		// An earlier try was written though its answer was lost; the
		// count is written back with the next repeat.
		return nil
	}
	return err
}

// event is the Event s is written as, with count occurrences until last.
func (r *Recorder) event(s *series, count int32, last time.Time) *eventsv1.Event {
	e := &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Name: s.name, Namespace: namespaceOf(s.key.regarding)},
		EventTime:           metav1.NewMicroTime(s.first),
		ReportingController: r.controller,
		ReportingInstance:   r.instance,
		Action:              s.key.action,
		Reason:              s.key.reason,
		Regarding:           s.key.regarding,
		Note:                s.key.note,
		Type:                s.key.eventType,
	}
	if s.key.related != (corev1.ObjectReference{}) {
		related := s.key.related
		e.Related = &related
	}
	if count > 1 {
		e.Series = &eventsv1.EventSeries{Count: count, LastObservedTime: metav1.NewMicroTime(last)}
	}
	return e
}

// eventName names an Event about the object named object: its name, the
// time and five random characters. The time alone, client-go's way, names two
// events about one object recorded at the same instant alike, and the
// second's create fails. A long name is cut so the whole stays within the
// API server's 253 characters.
func eventName(object string, now time.Time) string {
	suffix := fmt.Sprintf(".%x-%s", now.UnixNano(), utilrand.String(5))
	if len(object)+len(suffix) > validation.DNS1123SubdomainMaxLength {
		object = strings.TrimRight(object[:validation.DNS1123SubdomainMaxLength-len(suffix)], ".-")
	}
	return object + suffix
}

// namespaceOf is the namespace an Event about ref is written to: a
// cluster-scoped object's go to default.
func namespaceOf(ref corev1.ObjectReference) string {
	if ref.Namespace == "" {
		return metav1.NamespaceDefault
	}
	return ref.Namespace
}

// retryable says whether a failed write may succeed if tried again: the API
// server could not be reached or answered that it is busy or failing, not
// that the Event is invalid or forbidden.
func retryable(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return true
	}
	return apierrors.IsTooManyRequests(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) ||
		apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err) || status.Status().Code >= http.StatusInternalServerError
}

// truncate cuts s to at most n bytes, on a character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
