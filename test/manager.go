package test

import (
	"context"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// CacheManager starts a controller-runtime manager against the suite's API
// server for one spec, with the suites' scheme and no metrics server, after
// setup (field indexes, say) has run on it; it stops when the spec ends.
// It runs no controller of its own: specs reconcile by hand, and controller
// names may repeat from spec to spec.
func CacheManager(env *Environment, setup func(context.Context, manager.Manager) error) (context.Context, manager.Manager) {
	ctx, cancel := context.WithCancel(context.Background())
	ginkgo.DeferCleanup(cancel)
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: Scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)}})
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	if setup != nil {
		gomega.Expect(setup(ctx, mgr)).To(gomega.Succeed())
	}
	go func() {
		defer ginkgo.GinkgoRecover()
		gomega.Expect(mgr.Start(ctx)).To(gomega.Succeed())
	}()
	gomega.Expect(mgr.GetCache().WaitForCacheSync(ctx)).To(gomega.BeTrue())
	return ctx, mgr
}

// DrainEvents returns the events a fake recorder holds, emptying it.
func DrainEvents(r *events.FakeRecorder) []string {
	var out []string
	for {
		select {
		case e := <-r.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}
