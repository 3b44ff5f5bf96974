package operator_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
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
		for i := range n {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: fmt.Sprintf("pod-%d", i), UID: types.UID(fmt.Sprintf("uid-%d", i))}}
			op.Recorder.Eventf(pod, nil, corev1.EventTypeNormal, "Nominated", "Provision", "Pod should schedule on: nodeclaim/%d", i)
		}
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
