package operator_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"
	eventsv1client "k8s.io/client-go/kubernetes/typed/events/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/backstop-sh/backstop/pkg/operator"
)

// inFlight counts the Event writes under way and the most seen at once.
type inFlight struct {
	next      http.RoundTripper
	mu        sync.Mutex
	now, most int
}

func (f *inFlight) add(d int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now += d
	f.most = max(f.most, f.now)
}

func (f *inFlight) highest() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.most
}

func (f *inFlight) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPost || !strings.Contains(req.URL.Path, "/apis/events.k8s.io/") {
		return f.next.RoundTrip(req)
	}
	f.add(1)
	defer f.add(-1)
	// An API server under load answers slowly; writes that overlap show.
	time.Sleep(20 * time.Millisecond)
	return f.next.RoundTrip(req)
}

// syncBuffer is a log sink safe for the goroutines that write to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var _ = Describe("events", func() {
	It("writes every event, at most EventWriters at once, however many a batch emits", func() {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "events-"}}
		Expect(env.Client.Create(context.Background(), ns)).To(Succeed())
		opts, err := operator.ParseOptions([]string{"--cluster-name=test", "--metrics-bind-address=0", "--health-probe-bind-address=0",
			"--leader-elect=false", "--log-level=debug"}, func(string) string { return "" }, io.Discard)
		Expect(err).NotTo(HaveOccurred())
		counter := &inFlight{}
		cfg := rest.CopyConfig(env.Config)
		cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { counter.next = rt; return counter }
		logs := &syncBuffer{}
		op, err := operator.New(cfg, opts, operator.NewLoggerTo(opts, logs), nil, clock.RealClock{})
		Expect(err).NotTo(HaveOccurred())
		start(op)

		const n = 60
		before := runtime.NumGoroutine()
		for i := range n {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: fmt.Sprintf("pod-%d", i), UID: types.UID(fmt.Sprintf("uid-%d", i))}}
			op.Recorder.Eventf(pod, nil, corev1.EventTypeNormal, "Nominated", "Provision", "Pod should schedule on: nodeclaim/%d", i)
		}
		// Each write takes 20 ms, four at a time: most of the 60 still wait.
		Expect(runtime.NumGoroutine()-before).To(BeNumerically("<", n/2), "events waiting to be written wait in a queue, not in a goroutine each")
		Eventually(func(g Gomega) {
			var list eventsv1.EventList
			g.Expect(env.Client.List(context.Background(), &list, client.InNamespace(ns.Name))).To(Succeed())
			g.Expect(list.Items).To(HaveLen(n))
		}, 30*time.Second).Should(Succeed(), "every event is written")
		Expect(counter.highest()).To(BeNumerically("<=", operator.EventWriters), "writes wait their turn")
		Expect(counter.highest()).To(BeNumerically(">", 1), "writes still overlap")
		Eventually(logs.String).Should(ContainSubstring("Pod should schedule on: nodeclaim/59"), "events are logged at debug level")
	})
})

// eventsOf lists the Events in ns, sorted by name.
func eventsOf(ns string) func(g Gomega) []eventsv1.Event {
	return func(g Gomega) []eventsv1.Event {
		var list eventsv1.EventList
		g.Expect(env.Client.List(context.Background(), &list, client.InNamespace(ns))).To(Succeed())
		return list.Items
	}
}

// failingWrites answers the first fail Event creates with 503, and holds
// every Event write while held is set, until released or the request ends.
type failingWrites struct {
	next    http.RoundTripper
	mu      sync.Mutex
	fail    int
	creates int
	held    chan struct{}
}

func (f *failingWrites) RoundTrip(req *http.Request) (*http.Response, error) {
	if !strings.Contains(req.URL.Path, "/apis/events.k8s.io/") {
		return f.next.RoundTrip(req)
	}
	f.mu.Lock()
	held := f.held
	if req.Method == http.MethodPost {
		f.creates++
		if f.fail > 0 {
			f.fail--
			f.mu.Unlock()
			return &http.Response{StatusCode: http.StatusServiceUnavailable, Header: http.Header{"Content-Type": {"application/json"}}, Request: req,
				Body: io.NopCloser(strings.NewReader(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"ServiceUnavailable","code":503}`))}, nil
		}
	}
	f.mu.Unlock()
	if held != nil {
		select {
		case <-held:
		case <-req.Context().Done():
			return nil, req.Context().Err()
		}
	}
	return f.next.RoundTrip(req)
}

func (f *failingWrites) createsSeen() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.creates
}

var _ = Describe("the event recorder", func() {
	var (
		ns     string
		clk    *clocktesting.FakeClock
		writes *failingWrites
		logs   *syncBuffer
		rec    *operator.Recorder
	)
	BeforeEach(func() {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "recorder-"}}
		Expect(env.Client.Create(context.Background(), n)).To(Succeed())
		ns = n.Name
		clk = clocktesting.NewFakeClock(time.Now())
		writes = &failingWrites{}
		cfg := rest.CopyConfig(env.Config)
		cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { writes.next = rt; return writes }
		logs = &syncBuffer{}
		opts, err := operator.ParseOptions([]string{"--cluster-name=test"}, func(string) string { return "" }, io.Discard)
		Expect(err).NotTo(HaveOccurred())
		rec = operator.NewRecorder(eventsv1client.NewForConfigOrDie(cfg), scheme.Scheme, clk, operator.NewLoggerTo(opts, logs), "backstop")
	})
	run := func() {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			rec.Run(ctx)
		}()
		DeferCleanup(func() {
			cancel()
			Eventually(done).Should(BeClosed(), "the recorder stops with its context")
		})
	}
	// sweep lets the recorder's periodic pass run d from now.
	sweep := func(d time.Duration) {
		Eventually(clk.HasWaiters).Should(BeTrue(), "the recorder waits for its next pass")
		clk.Step(d)
	}
	pod := func(name string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(ns + "-" + name)}}
	}

	It("counts a repeated event on the Event already written, and writes a new one once the series has ended", func() {
		run()
		for range 5 {
			rec.Eventf(pod("a"), nil, corev1.EventTypeWarning, "FailedLaunch", "Launch", "no capacity in %s", "zone-a")
		}
		rec.Eventf(pod("a"), nil, corev1.EventTypeWarning, "FailedLaunch", "Launch", "no capacity in %s", "zone-b")
		Eventually(eventsOf(ns)).Should(HaveLen(2), "a repeat with another note is another event")
		sweep(operator.EventSeriesPatch + time.Second)
		Eventually(func(g Gomega) {
			notes := map[string]int32{}
			for _, e := range eventsOf(ns)(g) {
				g.Expect(e.ReportingController).To(Equal("backstop"))
				g.Expect(e.Regarding.Name).To(Equal("a"))
				count := int32(1)
				if e.Series != nil {
					count = e.Series.Count
				}
				notes[e.Note] = count
			}
			g.Expect(notes).To(Equal(map[string]int32{"no capacity in zone-a": 5, "no capacity in zone-b": 1}))
		}).Should(Succeed(), "the four repeats are counted on the first Event")

		sweep(operator.EventSeriesEnd)
		rec.Eventf(pod("a"), nil, corev1.EventTypeWarning, "FailedLaunch", "Launch", "no capacity in %s", "zone-a")
		Eventually(eventsOf(ns)).Should(HaveLen(3), "after six quiet minutes a repeat is a new Event")
	})

	It("writes an event about an object whose name is as long as names go", func() {
		run()
		long := strings.Repeat(strings.Repeat("a", 63)+".", 3) + strings.Repeat("a", 61)
		rec.Eventf(pod(long), nil, corev1.EventTypeNormal, "Nominated", "Provision", "Pod should schedule on: nodeclaim/x")
		Eventually(eventsOf(ns)).Should(HaveLen(1))
		Expect(logs.String()).NotTo(ContainSubstring("not writing an event"))
	})

	It("tries a write the API server could not take again, later", func() {
		writes.fail = 1
		run()
		rec.Eventf(pod("b"), nil, corev1.EventTypeNormal, "Nominated", "Provision", "Pod should schedule on: nodeclaim/x")
		Eventually(writes.createsSeen).Should(Equal(1))
		Consistently(eventsOf(ns), 200*time.Millisecond).Should(BeEmpty())
		sweep(15 * time.Second)
		Eventually(eventsOf(ns)).Should(HaveLen(1), "written on the retry")
		Expect(writes.createsSeen()).To(Equal(2))
	})

	It("drops events beyond its queue, says so, and keeps writing the rest", func() {
		writes.held = make(chan struct{})
		run()
		nominate := func(i int) {
			rec.Eventf(pod(fmt.Sprintf("p-%d", i)), nil, corev1.EventTypeNormal, "Nominated", "Provision", "Pod should schedule on: nodeclaim/x")
		}
		for i := range operator.EventWriters {
			nominate(i)
		}
		Eventually(writes.createsSeen).Should(Equal(operator.EventWriters), "every writer holds a write")
		for i := range operator.EventQueue + 10 {
			nominate(operator.EventWriters + i)
		}
		sweep(operator.EventSeriesPatch)
		Eventually(logs.String).Should(ContainSubstring(`"dropped":10`), "the events the queue could not hold are counted in the log")
		Expect(logs.String()).To(ContainSubstring("dropped events"))
		close(writes.held)
		Eventually(func(g Gomega) { g.Expect(len(eventsOf(ns)(g))).To(BeNumerically(">", 10)) }).Should(Succeed(), "the queued events are written")
	})
})
