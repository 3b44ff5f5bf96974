package metrics

import (
	"runtime"
	"runtime/debug"
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
	}
	l.eligible = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "karpenter_voluntary_disruption_eligible_nodes",
		Help: "Nodes a disruption round found eligible, by reason (empty, expired, underutilized: fallback nodes a preferred pool could take)."}, []string{"reason"})
	l.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "karpenter_voluntary_disruption_decisions_total",
		Help: "Disruption decisions, by decision (delete, replace), reason and consolidation_type (empty, return)."}, []string{"decision", "reason", "consolidation_type"})
	reg.MustRegister(l.created, l.terminated, l.terminationTime, l.disrupted, l.eligible, l.decisions)
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

// NodeTerminated counts a node removed after took since its deletion.
func (l *Lifecycle) NodeTerminated(pool string, took time.Duration) {
	if l != nil {
		l.terminated.WithLabelValues(pool).Inc()
		l.terminationTime.WithLabelValues(pool).Observe(took.Seconds())
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
