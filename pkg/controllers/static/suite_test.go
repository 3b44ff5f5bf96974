package static_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider/fake"
	"github.com/backstop-sh/backstop/pkg/controllers/nodeclaim"
	"github.com/backstop-sh/backstop/pkg/controllers/provisioning"
	"github.com/backstop-sh/backstop/pkg/controllers/static"
	"github.com/backstop-sh/backstop/pkg/scheduling"
	"github.com/backstop-sh/backstop/test"
)

var env = test.SuiteEnvironment()

func TestStatic(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "static NodePools")
}

// world is one spec's controller: the real API server through a cached
// client, the real provisioner filling, the fake cloud and a fake clock;
// specs call Reconcile themselves.
type world struct {
	ctx        context.Context
	client     client.Client
	cloud      *fake.CloudProvider
	clock      *clocktesting.FakeClock
	recorder   *events.FakeRecorder
	prov       *provisioning.Provisioner
	controller *static.Controller
}

func newWorld() *world {
	ctx, mgr := test.CacheManager(env, nodeclaim.IndexPodsByNode)
	clk := clocktesting.NewFakeClock(time.Now().Truncate(time.Second))
	cloud := fake.New(clk)
	typ := func(name string, cpu int64, price float64) *scheduling.InstanceType {
		return &scheduling.InstanceType{
			Name: name,
			Requirements: scheduling.NewRequirements(scheduling.MustRequirement(corev1.LabelArchStable, v1.OpIn, "amd64"),
				scheduling.MustRequirement(corev1.LabelInstanceTypeStable, v1.OpIn, name)),
			Capacity:  scheduling.Resources{CPU: cpu * 1000, Memory: cpu * 4 << 30, Pods: 29},
			Offerings: []scheduling.Offering{{Zone: "zone-a", CapacityType: v1.CapacityTypeSpot, Price: price, Available: true}},
		}
	}
	cloud.Types = []*scheduling.InstanceType{typ("m5.xlarge", 4, 0.08), typ("m5.large", 2, 0.04)}
	recorder := events.NewFakeRecorder(100)
	prov := provisioning.New(mgr.GetClient(), recorder, cloud, clk, provisioning.NewMetrics(prometheus.NewRegistry()), provisioning.Options{})
	c := static.New(mgr.GetClient(), mgr.GetAPIReader(), prov, recorder, clk)
	return &world{ctx: ctx, client: mgr.GetClient(), cloud: cloud, clock: clk, recorder: recorder, prov: prov, controller: c}
}

// events drains the recorded events.
func (w *world) events() []string { return test.DrainEvents(w.recorder) }
