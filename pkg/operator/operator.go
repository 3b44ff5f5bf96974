package operator

import (
	"context"
	"fmt"
	"net/http"
	"net/http/pprof"
	"strings"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	kruntime "k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
	v1 "github.com/backstop-sh/backstop/apis/v1"
)

// Operator is the running controller: its options, logger, clock and manager.
type Operator struct {
	Options *Options
	Log     logr.Logger
	Manager manager.Manager
	// Clock is the one clock every controller and cache is given.
	Clock clock.Clock
	// Process is this process's id, written on the NodeClaims it creates.
	Process string
	// Recorder writes Backstop's events, at most EventWriters at once.
	Recorder events.EventRecorder
}

// NewScheme returns a scheme with the built-in Kubernetes types and Backstop's APIs.
func NewScheme() (*kruntime.Scheme, error) {
	s := kruntime.NewScheme()
	for _, add := range []func(*kruntime.Scheme) error{clientgoscheme.AddToScheme, v1.AddToScheme, awsv1.AddToScheme} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// RESTConfig loads the kubeconfig named by the options, or the in-cluster config.
func RESTConfig(o *Options) (*rest.Config, error) {
	if o.Kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("loading kubeconfig %s (--kubeconfig / KUBECONFIG): %w", o.Kubeconfig, err)
		}
		return cfg, nil
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("no Kubernetes config: run in a cluster, or set --kubeconfig or KUBECONFIG: %w", err)
	}
	return cfg, nil
}

// New builds the manager with leader election, health and readiness probes and
// the metrics endpoint, and registers the controllers. Provisioning and the
// node lifecycle run only with AWS clients (nil leaves them off). Every
// controller and cache runs on clk.
func New(cfg *rest.Config, o *Options, log logr.Logger, clients *AWS, clk clock.Clock) (*Operator, error) {
	scheme, err := NewScheme()
	if err != nil {
		return nil, err
	}
	ctrl.SetLogger(log)
	// client-go's default of 5 requests a second would pace a controller
	// that creates hundreds of objects a minute.
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = float32(o.KubeClientQPS), o.KubeClientBurst
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return evictionsNotRetried{next: rt} })
	watches, err := watchClient(cfg)
	if err != nil {
		return nil, err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: scheme,
		Logger: log,
		// Nothing reads managedFields; without them the cached pods and
		// nodes take a third less memory.
		Cache:                         cache.Options{DefaultTransform: cache.TransformStripManagedFields(), HTTPClient: watches},
		Metrics:                       metricsserver.Options{BindAddress: o.MetricsBindAddress, ExtraHandlers: profiling(o.EnableProfiling)},
		HealthProbeBindAddress:        o.HealthProbeBindAddress,
		LeaderElection:                o.LeaderElect,
		LeaderElectionID:              o.LeaderElectionName,
		LeaderElectionNamespace:       o.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &o.LeaseDuration,
		RenewDeadline:                 &o.RenewDeadline,
		RetryPeriod:                   &o.RetryPeriod,
	})
	if err != nil {
		return nil, fmt.Errorf("creating the controller manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, err
	}
	// Ready once the informer caches have synced, so a replica that cannot reach
	// the API server is not sent traffic.
	if err := mgr.AddReadyzCheck("readyz", func(req *http.Request) error {
		if !mgr.GetCache().WaitForCacheSync(req.Context()) {
			return fmt.Errorf("informer caches have not synced")
		}
		return nil
	}); err != nil {
		return nil, err
	}
	recorder, err := newEventRecorder(mgr, cfg, mgr.GetHTTPClient(), scheme, clk, log)
	if err != nil {
		return nil, err
	}
	op := &Operator{Options: o, Log: log, Manager: mgr, Clock: clk, Process: string(uuid.NewUUID()), Recorder: recorder}
	if clients == nil || clients.EC2 == nil {
		log.Info("no cloud provider configured: pending pods will not be provisioned")
		return op, nil
	}
	if err := op.registerAWS(cfg, clients); err != nil {
		return nil, err
	}
	return op, nil
}

// Start runs the manager until ctx is done.
func (op *Operator) Start(ctx context.Context) error {
	op.Log.Info("starting backstop", "cluster-name", op.Options.ClusterName, "leader-elect", op.Options.LeaderElect)
	return op.Manager.Start(ctx)
}

// profiling is Go's pprof handlers for the metrics endpoint, when enabled.
func profiling(enabled bool) map[string]http.Handler {
	if !enabled {
		return nil
	}
	return map[string]http.Handler{
		"/debug/pprof/":        http.HandlerFunc(pprof.Index),
		"/debug/pprof/cmdline": http.HandlerFunc(pprof.Cmdline),
		"/debug/pprof/profile": http.HandlerFunc(pprof.Profile),
		"/debug/pprof/symbol":  http.HandlerFunc(pprof.Symbol),
		"/debug/pprof/trace":   http.HandlerFunc(pprof.Trace),
	}
}

// EventSource is the component Backstop's events are reported by.
const EventSource = "backstop"

// evictionsNotRetried keeps client-go from retrying a refused eviction on
// its own. While kube-controller-manager has not yet counted a
// PodDisruptionBudget (just created or changed), the API server refuses the
// evictions it covers with 429 and Retry-After: 10, and client-go would
// sleep and ask again up to ten times, holding a drain worker for more than
// a minute and a half. The drain asks again on its own, a few seconds
// later, and says why in an EvictionBlocked event.
type evictionsNotRetried struct{ next http.RoundTripper }

func (e evictionsNotRetried) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := e.next.RoundTrip(req)
	if err == nil && resp.StatusCode == http.StatusTooManyRequests && req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/eviction") {
		resp.Header.Del("Retry-After")
	}
	return resp, err
}

// watchClient is the HTTP client of the informer cache: HTTP/1.1, so each
// watch (pods, nodes, NodeClaims, ...) has a TCP connection of its own. Over
// HTTP/2 the watches share one connection, and in a scale-up the pod events
// queued behind the NodeClaim and Node updates (large objects, written many
// times each): with 2,000 pods the controller saw new pods up to 4 s after
// another client of the same API server did; on connections of their own,
// within 0.1 s. (One HTTP/2 connection for all watches, apart from the
// writes, did not help.) Writes stay on one HTTP/2 connection.
func watchClient(cfg *rest.Config) (*http.Client, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.NextProtos = []string{"http/1.1"}
	c, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("building the informer cache's HTTP client: %w", err)
	}
	return c, nil
}
