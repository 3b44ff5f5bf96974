package test

import (
	"context"
	"io"
	"net/http/httptest"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/backstop-sh/backstop/pkg/operator"
	"github.com/backstop-sh/backstop/test/ec2sim"
)

// StartBackstop runs the controller, as the binary does, against the
// environment's API server and a fresh EC2 simulator, until the spec (or
// container) that called it ends. Extra flags override the test defaults.
func StartBackstop(env *Environment, cfg ec2sim.Config, flags ...string) *ec2sim.Server {
	if cfg.Policy == nil && cfg.PolicyFile == "" {
		cfg.PolicyFile = ShippedPolicy
	}
	sim, err := ec2sim.New(cfg, clock.RealClock{})
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	srv := httptest.NewServer(sim)
	ginkgo.DeferCleanup(srv.Close)

	region := cfg.Region
	if region == "" {
		region = "us-east-1"
	}
	args := append([]string{
		"--cluster-name=my-cluster", "--leader-elect=false", "--metrics-bind-address=0", "--health-probe-bind-address=0",
		"--aws-region=" + region, "--batch-idle-duration=300ms", "--batch-max-duration=3s",
	}, flags...)
	opts, err := operator.ParseOptions(args, func(string) string { return "" }, io.Discard)
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	op, err := operator.New(env.Config, opts, zap.New(zap.WriteTo(ginkgo.GinkgoWriter), zap.UseDevMode(true)), AWSClients(srv.URL), clock.RealClock{})
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer ginkgo.GinkgoRecover()
		defer close(done)
		gomega.Expect(op.Start(ctx)).To(gomega.Succeed())
	}()
	ginkgo.DeferCleanup(func() {
		cancel()
		<-done
	})
	return sim
}
