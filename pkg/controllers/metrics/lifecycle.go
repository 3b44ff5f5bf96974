package metrics

import (
	"runtime"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// quantiles are those Karpenter's performance dashboard reads.
var quantiles = map[float64]float64{0: 0, 0.5: 0.05, 0.9: 0.01, 0.99: 0.001, 1: 0}

// Lifecycle counts what happens to nodes, with Karpenter's names and labels.
// A nil *Lifecycle counts nothing, so controllers built without it work.
type Lifecycle struct {
	created, terminated *prometheus.CounterVec
	terminationTime     *prometheus.SummaryVec
	drained             *prometheus.CounterVec
	lifetime            *prometheus.HistogramVec
	evictions           *prometheus.CounterVec
	podsDrained         *prometheus.CounterVec
	disrupted           *prometheus.CounterVec
	eligible            *prometheus.GaugeVec
	decisions           *prometheus.CounterVec
}

// NewLifecycle registers the counters on reg.
func NewLifecycle(reg prometheus.Registerer) *Lifecycle {
	l := &Lifecycle{
		created: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "karpenter_nodes_created_total",
			Help: "Nodes registered, by NodePool."}, []string{"nodepool"}),
		terminated: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "karpenter_nodes_terminated_total",
			Help: "Nodes drained and removed, by NodePool."}, []string{"nodepool"}),
		terminationTime: prometheus.NewSummaryVec(prometheus.SummaryOpts{Name: "karpenter_nodes_termination_duration_seconds",
			Help: "Time from a node's deletion to its finalizer's release, drain included.", Objectives: quantiles}, []string{"nodepool"}),
		disrupted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "karpenter_nodeclaims_disrupted_total",
			Help: "NodeClaims deleted to disrupt them, by NodePool, reason and capacity type."}, []string{"nodepool", "reason", "capacity_type"}),
		drained: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "karpenter_nodes_drained_total",
			Help: "Nodes whose drain finished, by NodePool (counted once, when the node is removed)."}, []string{"nodepool"}),
		lifetime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "karpenter_nodes_lifetime_duration_seconds",
			Help: "How long nodes lived, from creation to removal, by NodePool.", Buckets: lifetimeBuckets}, []string{"nodepool"}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "karpenter_pods_eviction_requests_total",
			Help: "Eviction requests the drain made, by the API server's response code (200 evicted, 429 refused by a PodDisruptionBudget)."}, []string{"code"}),
		podsDrained: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "karpenter_pods_drained_total",
			Help: "Pods the drain evicted, by the NodeClaim's DisruptionReason (Empty, Expired, Underutilized, Drifted; Forceful Termination without one)."}, []string{"reason"}),
	}
	l.eligible = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "karpenter_voluntary_disruption_eligible_nodes",
		Help: "Nodes a disruption round found eligible, by reason (empty, expired, underutilized: fallback nodes a preferred pool could take)."}, []string{"reason"})
	l.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "karpenter_voluntary_disruption_decisions_total",
		Help: "Disruption decisions, by decision (delete, replace), reason and consolidation_type (empty, single, multi, return)."}, []string{"decision", "reason", "consolidation_type"})
	reg.MustRegister(l.created, l.terminated, l.terminationTime, l.drained, l.lifetime, l.evictions, l.podsDrained, l.disrupted, l.eligible, l.decisions)
	return l
}

// Eligible sets how many nodes a disruption round found eligible, by reason;
// reasons not given are zero.
func (l *Lifecycle) Eligible(reason string, n int) {
	if l != nil {
		l.eligible.WithLabelValues(reason).Set(float64(n))
	}
}

// Decided counts a voluntary disruption decision.
func (l *Lifecycle) Decided(decision, reason, consolidationType string) {
	if l != nil {
		l.decisions.WithLabelValues(decision, reason, consolidationType).Inc()
	}
}

// NodeCreated counts a node registered for the pool.
func (l *Lifecycle) NodeCreated(pool string) {
	if l != nil {
		l.created.WithLabelValues(pool).Inc()
	}
}

// lifetimeBuckets span a node's life from a quarter of an hour to a month.
var lifetimeBuckets = []float64{
	(15 * time.Minute).Seconds(), (30 * time.Minute).Seconds(), time.Hour.Seconds(), (2 * time.Hour).Seconds(), (4 * time.Hour).Seconds(),
	(8 * time.Hour).Seconds(), (12 * time.Hour).Seconds(), (24 * time.Hour).Seconds(), (48 * time.Hour).Seconds(), (96 * time.Hour).Seconds(),
	(7 * 24 * time.Hour).Seconds(), (14 * 24 * time.Hour).Seconds(), (30 * 24 * time.Hour).Seconds(),
}

// NodeTerminated counts a node drained and removed, took after its
// deletion and lived after its creation.
func (l *Lifecycle) NodeTerminated(pool string, took, lived time.Duration) {
	if l != nil {
		l.terminated.WithLabelValues(pool).Inc()
		l.drained.WithLabelValues(pool).Inc()
		l.terminationTime.WithLabelValues(pool).Observe(took.Seconds())
		l.lifetime.WithLabelValues(pool).Observe(lived.Seconds())
	}
}

// EvictionRequested counts an eviction request by the HTTP status code of
// its answer.
func (l *Lifecycle) EvictionRequested(code int32) {
	if l != nil {
		l.evictions.WithLabelValues(strconv.Itoa(int(code))).Inc()
	}
}

// PodDrained counts a pod the drain evicted, by why its node goes.
func (l *Lifecycle) PodDrained(reason string) {
	if l != nil {
		l.podsDrained.WithLabelValues(reason).Inc()
	}
}

// Disrupted counts a NodeClaim deleted for a reason (empty, expired, a
// notice kind such as spot_interrupted).
func (l *Lifecycle) Disrupted(pool, reason, capacityType string) {
	if l != nil {
		l.disrupted.WithLabelValues(pool, reason, capacityType).Inc()
	}
}

// RegisterBuildInfo exports backstop_build_info, 1, labelled with the
// module version, VCS revision and Go version of the running binary.
func RegisterBuildInfo(reg prometheus.Registerer) {
	version, revision := "(devel)", "unknown"
	if info, ok := debug.ReadBuildInfo(); ok {
		version = info.Main.Version
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "backstop_build_info", Help: "The running binary: version, revision, Go version.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": runtime.Version()}})
	g.Set(1)
	reg.MustRegister(g)
}
