package operator_test

import (
	"io"
	"runtime/debug"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/backstop-sh/backstop/pkg/operator"
)

func environment(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

var _ = Describe("options", func() {
	It("requires a cluster name and says how to set it", func() {
		_, err := operator.ParseOptions(nil, environment(nil), io.Discard)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("--cluster-name"))
		Expect(err.Error()).To(ContainSubstring("CLUSTER_NAME"))
	})

	It("reads every flag from its environment variable", func() {
		o, err := operator.ParseOptions(nil, environment(map[string]string{
			"CLUSTER_NAME": "prod", "METRICS_BIND_ADDRESS": ":9090", "HEALTH_PROBE_BIND_ADDRESS": ":9091",
			"LEADER_ELECT": "false", "LEADER_ELECTION_NAMESPACE": "backstop", "LOG_LEVEL": "debug", "LOG_FORMAT": "console",
			"BATCH_IDLE_DURATION": "2s", "BATCH_MAX_DURATION": "20s", "PREFERENCE_POLICY": "Ignore",
			"AWS_REGION": "eu-west-1", "AWS_ENDPOINT": "http://127.0.0.1:4566", "UNAVAILABLE_OFFERINGS_TTL": "1m",
			"REGISTRATION_TTL": "5m", "GC_INTERVAL": "30s", "DISRUPTION_INTERVAL": "20s", "LAUNCH_TIMEOUT": "2m",
			"LEADER_ELECTION_LEASE_DURATION": "6s", "LEADER_ELECTION_RENEW_DEADLINE": "4s", "LEADER_ELECTION_RETRY_PERIOD": "1s",
			"KUBE_CLIENT_QPS": "50.5", "KUBE_CLIENT_BURST": "80", "ENABLE_PROFILING": "true", "EARLY_PROVISIONING": "false", "EARLY_NODECLAIMS": "false", "MEMORY_LIMIT": "1073741824",
			"RETURN_TO_PREFERRED_POOL": "false", "RETURN_COOLDOWN": "10m", "RETURN_MAX_PER_INTERVAL": "3", "RETURN_INTERVAL": "15m",
			"RETURN_MIN_SAVING": "0.25", "RETURN_TIMEOUT": "30m",
		}), io.Discard)
		Expect(err).NotTo(HaveOccurred())
		Expect(*o).To(Equal(operator.Options{
			ClusterName: "prod", MetricsBindAddress: ":9090", HealthProbeBindAddress: ":9091",
			LeaderElect: false, LeaderElectionNamespace: "backstop", LeaderElectionName: "backstop-leader-election",
			LeaseDuration: 6 * time.Second, RenewDeadline: 4 * time.Second, RetryPeriod: time.Second,
			KubeClientQPS: 50.5, KubeClientBurst: 80, EnableProfiling: true, EarlyProvisioning: false, MemoryLimit: 1 << 30,
			LogLevel: "debug", LogFormat: "console",
			BatchIdleDuration: 2 * time.Second, BatchMaxDuration: 20 * time.Second, PreferencePolicy: "Ignore",
			AWSRegion: "eu-west-1", AWSEndpoint: "http://127.0.0.1:4566", UnavailableOfferingsTTL: time.Minute,
			RegistrationTTL: 5 * time.Minute, GCInterval: 30 * time.Second, DisruptionInterval: 20 * time.Second, LaunchTimeout: 2 * time.Minute,
			ReturnToPreferredPool: false, ReturnCooldown: 10 * time.Minute, ReturnMaxPerInterval: 3, ReturnInterval: 15 * time.Minute,
			ReturnMinSaving: 0.25, ReturnTimeout: 30 * time.Minute,
		}))
	})

	It("lets a command-line flag win over the environment", func() {
		o, err := operator.ParseOptions([]string{"--cluster-name=from-flag", "--log-level=error"},
			environment(map[string]string{"CLUSTER_NAME": "from-env", "LOG_LEVEL": "debug"}), io.Discard)
		Expect(err).NotTo(HaveOccurred())
		Expect(o.ClusterName).To(Equal("from-flag"))
		Expect(o.LogLevel).To(Equal("error"))
	})

	It("defaults to JSON logs at info, leader election on, and the pod's namespace", func() {
		o, err := operator.ParseOptions(nil, environment(map[string]string{"CLUSTER_NAME": "c", "SYSTEM_NAMESPACE": "karpenter"}), io.Discard)
		Expect(err).NotTo(HaveOccurred())
		Expect(o.LogFormat).To(Equal("json"))
		Expect(o.LogLevel).To(Equal("info"))
		Expect(o.LeaderElect).To(BeTrue())
		Expect(o.LeaderElectionNamespace).To(Equal("karpenter"))
		Expect(o.MetricsBindAddress).To(Equal(":8080"))
		Expect(o.BatchIdleDuration).To(Equal(time.Second))
		Expect(o.BatchMaxDuration).To(Equal(10 * time.Second))
		Expect(o.PreferencePolicy).To(Equal("Respect"))
		Expect(o.KubeClientQPS).To(Equal(200.0), "not client-go's 5 requests a second")
		Expect(o.KubeClientBurst).To(Equal(300))
		Expect(o.EarlyProvisioning).To(BeTrue(), "new pods are planned before kube-scheduler's verdict")
		Expect(o.EarlyNodeClaims).To(BeTrue(), "NodeClaims the pods fill are created while the window is open")
		Expect(o.EnableProfiling).To(BeFalse())
		Expect(o.MemoryLimit).To(Equal(int64(-1)), "no memory limit unless the chart passes one")
		Expect(o.ReturnToPreferredPool).To(BeTrue(), "fallback nodes go back to Spot by default")
		Expect(o.ReturnMinSaving).To(Equal(0.1))
	})

	It("refuses a return saving that is not a fraction, naming the flag and the fix", func() {
		_, err := operator.ParseOptions([]string{"--return-min-saving=10"}, environment(map[string]string{"CLUSTER_NAME": "c"}), io.Discard)
		Expect(err).To(MatchError(And(ContainSubstring("--return-min-saving (RETURN_MIN_SAVING)"), ContainSubstring("such as 0.1 for 10%"))))
	})

	It("sets Go's soft memory limit to 90% of the container's, unless GOMEMLIMIT is set", func() {
		before := debug.SetMemoryLimit(-1)
		DeferCleanup(func() { debug.SetMemoryLimit(before) })
		o := &operator.Options{MemoryLimit: 1000 << 20}
		Expect(operator.ApplyMemoryLimit(o, environment(map[string]string{"GOMEMLIMIT": "2GiB"}))).To(Equal(before), "GOMEMLIMIT wins")
		Expect(operator.ApplyMemoryLimit(o, environment(nil))).To(Equal(int64(900 << 20)))
	})

	DescribeTable("rejects bad values, naming the setting and the fix",
		func(args []string, vars map[string]string, want string) {
			vars["CLUSTER_NAME"] = "c"
			_, err := operator.ParseOptions(args, environment(vars), io.Discard)
			Expect(err).To(MatchError(ContainSubstring(want)))
		},
		Entry("a log level", []string{"--log-level=loud"}, map[string]string{}, `--log-level (LOG_LEVEL) "loud" is not a level: use debug, info or error`),
		Entry("a log format", nil, map[string]string{"LOG_FORMAT": "xml"}, `--log-format (LOG_FORMAT) "xml" is not a format`),
		Entry("a boolean in the environment", nil, map[string]string{"LEADER_ELECT": "maybe"}, `LEADER_ELECT="maybe" is not a boolean: use true or false`),
		Entry("a duration in the environment", nil, map[string]string{"BATCH_IDLE_DURATION": "soon"}, `BATCH_IDLE_DURATION="soon" is not a duration`),
		Entry("an idle window longer than the max", []string{"--batch-idle-duration=30s"}, map[string]string{}, "idle no longer than max"),
		Entry("a preference policy", nil, map[string]string{"PREFERENCE_POLICY": "Maybe"}, `"Maybe" is not a policy: use Respect or Ignore`),
		Entry("an unknown flag", []string{"--clustername=x"}, map[string]string{}, "flag provided but not defined: -clustername"),
		Entry("a rate in the environment", nil, map[string]string{"KUBE_CLIENT_QPS": "fast"}, `KUBE_CLIENT_QPS="fast" is not a number`),
		Entry("a burst in the environment", nil, map[string]string{"KUBE_CLIENT_BURST": "1.5"}, `KUBE_CLIENT_BURST="1.5" is not a whole number`),
		Entry("a rate of zero", []string{"--kube-client-qps=0"}, map[string]string{}, "--kube-client-qps (0) and --kube-client-burst (300) must be positive"),
		Entry("leader election timings out of order", []string{"--leader-election-renew-deadline=20s"}, map[string]string{},
			"--leader-election-retry-period (2s) < --leader-election-renew-deadline (20s) < --leader-election-lease-duration (15s)"),
	)
})
