package operator_test

import (
	"context"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/operator"
)

// watchLog is what a proxy in front of the API server saw of watches: per
// resource path, the protocol and the client's connection.
type watchLog struct {
	mu    sync.Mutex
	proto map[string]string
	conn  map[string]string
	other map[string]bool
}

func (w *watchLog) seen() (map[string]string, map[string]string, map[string]bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	proto, conn, other := map[string]string{}, map[string]string{}, map[string]bool{}
	for k, v := range w.proto {
		proto[k], conn[k] = v, w.conn[k]
	}
	for k := range w.other {
		other[k] = true
	}
	return proto, conn, other
}

// proxied serves the API server through a TLS proxy that speaks HTTP/2 and
// HTTP/1.1 as the API server does, and returns a config for it.
func proxied() (*rest.Config, *watchLog) {
	target, err := url.Parse(env.Config.Host)
	Expect(err).NotTo(HaveOccurred())
	transport, err := rest.TransportFor(env.Config)
	Expect(err).NotTo(HaveOccurred())
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport, proxy.FlushInterval = transport, -1
	log := &watchLog{proto: map[string]string{}, conn: map[string]string{}, other: map[string]bool{}}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		log.mu.Lock()
		if r.URL.Query().Get("watch") == "true" {
			log.proto[r.URL.Path], log.conn[r.URL.Path] = r.Proto, r.RemoteAddr
		} else {
			log.other[r.Proto+" "+r.RemoteAddr] = true
		}
		log.mu.Unlock()
		proxy.ServeHTTP(rw, r)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	DeferCleanup(srv.Close)
	cfg := &rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{
		CAData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}),
	}}
	return cfg, log
}

var _ = Describe("the informer cache", func() {
	It("watches each kind on a connection of its own, so one kind's updates never queue behind another's", func() {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "backstop-"}}
		Expect(env.Client.Create(context.Background(), ns)).To(Succeed())
		cfg, log := proxied()
		opts, err := operator.ParseOptions([]string{
			"--cluster-name=test", "--metrics-bind-address=0", "--health-probe-bind-address=0",
			"--leader-election-namespace=" + ns.Name,
		}, func(string) string { return "" }, io.Discard)
		Expect(err).NotTo(HaveOccurred())
		op, err := operator.New(cfg, opts, operator.NewLogger(opts), nil, clock.RealClock{})
		Expect(err).NotTo(HaveOccurred())
		start(op)
		// What the controllers watch; without cloud clients none are
		// registered, so the spec asks the manager's cache itself.
		for _, obj := range []client.Object{&corev1.Pod{}, &corev1.Node{}, &v1.NodeClaim{}} {
			_, err := op.Manager.GetCache().GetInformer(context.Background(), obj)
			Expect(err).NotTo(HaveOccurred())
		}
		Eventually(func(g Gomega) {
			proto, _, _ := log.seen()
			g.Expect(proto).To(HaveKey("/api/v1/pods"))
			g.Expect(proto).To(HaveKey("/api/v1/nodes"))
			g.Expect(proto).To(HaveKey("/apis/karpenter.sh/v1/nodeclaims"))
		}, 30*time.Second).Should(Succeed(), "the cache should watch pods, nodes and NodeClaims")
		proto, conn, other := log.seen()
		owner := map[string]string{}
		for path, p := range proto {
			Expect(p).To(Equal("HTTP/1.1"), "the watch of %s", path)
			Expect(owner).NotTo(HaveKey(conn[path]), "the watches of %s and %s share a connection", path, owner[conn[path]])
			owner[conn[path]] = path
		}
		// The rest (leader election, writes) stays multiplexed on HTTP/2.
		Eventually(func() []string {
			_, _, other = log.seen()
			var h2 []string
			for k := range other {
				if strings.HasPrefix(k, "HTTP/2") {
					h2 = append(h2, k)
				}
			}
			return h2
		}, 30*time.Second).ShouldNot(BeEmpty(), "requests other than the cache's should use HTTP/2")
	})
})
