package operator_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/backstop-sh/backstop/pkg/operator"
)

func freeAddress() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer l.Close()
	return l.Addr().String()
}

func get(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// start runs the operator until the spec ends, and checks it then stops cleanly.
func start(op *operator.Operator) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- op.Start(ctx) }()
	DeferCleanup(func() {
		cancel()
		Eventually(done, 30*time.Second).Should(Receive(BeNil()), "the manager should stop cleanly")
	})
}

var _ = Describe("the manager", func() {
	It("wins a leader election Lease and serves health, readiness and Prometheus metrics", func() {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "backstop-"}}
		Expect(env.Client.Create(context.Background(), ns)).To(Succeed())
		metrics, probes := freeAddress(), freeAddress()
		opts, err := operator.ParseOptions([]string{
			"--cluster-name=test", "--metrics-bind-address=" + metrics, "--health-probe-bind-address=" + probes,
			"--leader-election-namespace=" + ns.Name,
		}, func(string) string { return "" }, io.Discard)
		Expect(err).NotTo(HaveOccurred())
		op, err := operator.New(env.Config, opts, operator.NewLogger(opts), nil, clock.RealClock{})
		Expect(err).NotTo(HaveOccurred())
		start(op)

		Eventually(func() int { code, _ := get("http://" + probes + "/healthz"); return code }, 30*time.Second).Should(Equal(http.StatusOK))
		Eventually(func() int { code, _ := get("http://" + probes + "/readyz"); return code }, 30*time.Second).Should(Equal(http.StatusOK))

		lease := &coordinationv1.Lease{}
		Eventually(func(g Gomega) {
			g.Expect(env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns.Name, Name: "backstop-leader-election"}, lease)).To(Succeed())
			g.Expect(lease.Spec.HolderIdentity).NotTo(BeNil())
			g.Expect(*lease.Spec.HolderIdentity).NotTo(BeEmpty())
		}, 30*time.Second).Should(Succeed(), "the manager should hold the leader election Lease")

		code, body := get(fmt.Sprintf("http://%s/metrics", metrics))
		Expect(code).To(Equal(http.StatusOK))
		Expect(strings.Contains(body, "leader_election_master_status")).To(BeTrue(), "metrics should include the leader election status")
	})
})
