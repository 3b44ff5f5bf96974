// Package fallback_test runs Backstop's controllers against a real API server
// and the EC2 simulator, and checks what happens when Spot runs out.
package fallback_test

import (
	"context"
	"io"
	"net/http/httptest"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/backstop-sh/backstop/pkg/operator"
	"github.com/backstop-sh/backstop/test"
	"github.com/backstop-sh/backstop/test/ec2sim"
)

var (
	env = test.SuiteEnvironment()
	sim *ec2sim.Server
	ttl = 3 * time.Second
)

func TestFallback(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Spot-first fallback")
}

// startBackstop runs the controller, as the binary does, against the API server
// and a simulator serving ap-northeast-2 (the zones of the README's NodePools).
func startBackstop() {
	var err error
	sim, err = ec2sim.New(ec2sim.Config{Region: "ap-northeast-2", ClusterTag: "my-cluster"}, clock.RealClock{})
	Expect(err).NotTo(HaveOccurred())
	srv := httptest.NewServer(sim)
	DeferCleanup(srv.Close)

	opts, err := operator.ParseOptions([]string{
		"--cluster-name=my-cluster", "--leader-elect=false", "--metrics-bind-address=0", "--health-probe-bind-address=0",
		"--aws-region=ap-northeast-2", "--batch-idle-duration=300ms", "--batch-max-duration=3s",
		"--unavailable-offerings-ttl=" + ttl.String(),
	}, func(string) string { return "" }, io.Discard)
	Expect(err).NotTo(HaveOccurred())
	op, err := operator.New(env.Config, opts, zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)), test.EC2Client(srv.URL))
	Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	DeferCleanup(cancel)
	go func() {
		defer GinkgoRecover()
		Expect(op.Start(ctx)).To(Succeed())
	}()
}
