// Package operator wires Backstop together: options from flags and the
// environment, the controller-runtime manager, logging, metrics and leader election.
package operator

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// Options configure the controller. Every flag has an environment variable of the
// same name in upper snake case (--cluster-name and CLUSTER_NAME); a flag given on
// the command line wins over the environment.
type Options struct {
	ClusterName             string
	ClusterEndpoint         string
	ClusterCABundle         string
	MetricsBindAddress      string
	EnableProfiling         bool
	EarlyProvisioning       bool
	EarlyNodeClaims         bool
	MemoryLimit             int64
	HealthProbeBindAddress  string
	LeaderElect             bool
	LeaderElectionNamespace string
	LeaderElectionName      string
	LeaseDuration           time.Duration
	RenewDeadline           time.Duration
	RetryPeriod             time.Duration
	LogLevel                string
	LogFormat               string
	Kubeconfig              string
	KubeClientQPS           float64
	KubeClientBurst         int
	AWSRegion               string
	AWSEndpoint             string
	UnavailableOfferingsTTL time.Duration
	RegistrationTTL         time.Duration
	LaunchTimeout           time.Duration
	GCInterval              time.Duration
	DisruptionInterval      time.Duration
	BatchIdleDuration       time.Duration
	BatchMaxDuration        time.Duration
	PreferencePolicy        string
	InterruptionQueue       string
	ReplaceOnRebalance      bool
	ReturnToPreferredPool   bool
	ReturnCooldown          time.Duration
	ReturnMaxPerInterval    int
	ReturnInterval          time.Duration
	ReturnMinSaving         float64
	ReturnTimeout           time.Duration
}

// ParseOptions reads options from args (without the program name) and getenv.
// The error names the flag, its environment variable and the fix.
func ParseOptions(args []string, getenv func(string) string, usage io.Writer) (*Options, error) {
	o := &Options{}
	fs := flag.NewFlagSet("controller", flag.ContinueOnError)
	fs.SetOutput(usage)
	env := envDefaults{getenv: getenv}
	fs.StringVar(&o.ClusterName, "cluster-name", env.str("cluster-name", ""), "name of the Kubernetes cluster; tags every instance (required) [CLUSTER_NAME]")
	fs.StringVar(&o.ClusterEndpoint, "cluster-endpoint", env.str("cluster-endpoint", ""), "the API server URL nodes join; default: what EKS DescribeCluster says [CLUSTER_ENDPOINT]")
	fs.StringVar(&o.ClusterCABundle, "cluster-ca-bundle", env.str("cluster-ca-bundle", ""), "the cluster's CA nodes trust, PEM or base64 of it; default: what EKS DescribeCluster says [CLUSTER_CA_BUNDLE]")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", env.str("metrics-bind-address", ":8080"), "address of the Prometheus /metrics endpoint; 0 turns it off [METRICS_BIND_ADDRESS]")
	fs.BoolVar(&o.EnableProfiling, "enable-profiling", env.boolean("enable-profiling", false), "serve Go's pprof profiles under /debug/pprof/ on the metrics endpoint [ENABLE_PROFILING]")
	fs.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", env.str("health-probe-bind-address", ":8081"), "address of the /healthz and /readyz probes [HEALTH_PROBE_BIND_ADDRESS]")
	fs.BoolVar(&o.LeaderElect, "leader-elect", env.boolean("leader-elect", true), "elect one active replica through a Lease [LEADER_ELECT]")
	fs.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", env.str("leader-election-namespace", defaultNamespace(getenv)), "namespace of the leader election Lease [LEADER_ELECTION_NAMESPACE]")
	fs.StringVar(&o.LeaderElectionName, "leader-election-name", env.str("leader-election-name", "backstop-leader-election"), "name of the leader election Lease [LEADER_ELECTION_NAME]")
	fs.DurationVar(&o.LeaseDuration, "leader-election-lease-duration", env.duration("leader-election-lease-duration", 15*time.Second), "how long standby replicas wait after the leader's last renewal before taking over [LEADER_ELECTION_LEASE_DURATION]")
	fs.DurationVar(&o.RenewDeadline, "leader-election-renew-deadline", env.duration("leader-election-renew-deadline", 10*time.Second), "how long the leader keeps trying to renew before it steps down [LEADER_ELECTION_RENEW_DEADLINE]")
	fs.DurationVar(&o.RetryPeriod, "leader-election-retry-period", env.duration("leader-election-retry-period", 2*time.Second), "how often leader election is tried and renewed [LEADER_ELECTION_RETRY_PERIOD]")
	fs.StringVar(&o.LogLevel, "log-level", env.str("log-level", "info"), "debug, info or error [LOG_LEVEL]")
	fs.StringVar(&o.LogFormat, "log-format", env.str("log-format", "json"), "json or console [LOG_FORMAT]")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", env.str("kubeconfig", ""), "kubeconfig to use outside a cluster [KUBECONFIG]")
	fs.Float64Var(&o.KubeClientQPS, "kube-client-qps", env.float("kube-client-qps", 200), "requests per second the controller may make to the API server, sustained [KUBE_CLIENT_QPS]")
	fs.IntVar(&o.KubeClientBurst, "kube-client-burst", env.integer("kube-client-burst", 300), "requests the controller may make to the API server in a burst [KUBE_CLIENT_BURST]")
	fs.StringVar(&o.AWSRegion, "aws-region", env.str("aws-region", getenv("AWS_REGION")), "AWS region [AWS_REGION]")
	fs.StringVar(&o.AWSEndpoint, "aws-endpoint", env.str("aws-endpoint", ""), "EC2, SQS, EKS, SSM and IAM endpoint URL, for the simulator or a private endpoint [AWS_ENDPOINT]")
	fs.DurationVar(&o.UnavailableOfferingsTTL, "unavailable-offerings-ttl", env.duration("unavailable-offerings-ttl", 3*time.Minute), "how long capacity EC2 ran out of is skipped [UNAVAILABLE_OFFERINGS_TTL]")
	fs.DurationVar(&o.RegistrationTTL, "registration-ttl", env.duration("registration-ttl", 15*time.Minute), "a NodeClaim whose node does not register this long after launch is deleted [REGISTRATION_TTL]")
	fs.DurationVar(&o.LaunchTimeout, "launch-timeout", env.duration("launch-timeout", 5*time.Minute), "a NodeClaim that cannot launch for other reasons than capacity is given up after this long [LAUNCH_TIMEOUT]")
	fs.DurationVar(&o.GCInterval, "gc-interval", env.duration("gc-interval", time.Minute), "how often instances and NodeClaims are reconciled both ways [GC_INTERVAL]")
	fs.DurationVar(&o.DisruptionInterval, "disruption-interval", env.duration("disruption-interval", 10*time.Second), "how often empty and expired nodes are looked for [DISRUPTION_INTERVAL]")
	fs.DurationVar(&o.BatchIdleDuration, "batch-idle-duration", env.duration("batch-idle-duration", time.Second), "a batch of pending pods closes after this long without a new one [BATCH_IDLE_DURATION]")
	fs.DurationVar(&o.BatchMaxDuration, "batch-max-duration", env.duration("batch-max-duration", 10*time.Second), "a batch of pending pods closes after this long at most [BATCH_MAX_DURATION]")
	fs.Int64Var(&o.MemoryLimit, "memory-limit", env.int64("memory-limit", -1), "the container's memory limit in bytes; Go's soft memory limit is set to 90% of it unless GOMEMLIMIT is set (the chart passes limits.memory) [MEMORY_LIMIT]")
	fs.BoolVar(&o.EarlyProvisioning, "early-provisioning", env.boolean("early-provisioning", true), "plan new pods before kube-scheduler has judged them, on existing room first; false waits for its Unschedulable verdict, as Karpenter does [EARLY_PROVISIONING]")
	fs.BoolVar(&o.EarlyNodeClaims, "early-nodeclaims", env.boolean("early-nodeclaims", true), "while a batch window is open and new pods keep coming, create the NodeClaims the pods seen so far fill (every 250 ms) instead of waiting for the window to close; false creates every NodeClaim of a batch when it closes [EARLY_NODECLAIMS]")
	fs.StringVar(&o.PreferencePolicy, "preference-policy", env.str("preference-policy", "Respect"), "Respect or Ignore preferred affinities and ScheduleAnyway spread when planning [PREFERENCE_POLICY]")
	fs.StringVar(&o.InterruptionQueue, "interruption-queue", env.str("interruption-queue", ""), "SQS queue (name or URL) EventBridge feeds with Spot interruption warnings, rebalance recommendations, scheduled changes and instance state changes; empty turns interruption handling off [INTERRUPTION_QUEUE]")
	fs.BoolVar(&o.ReplaceOnRebalance, "replace-on-rebalance", env.boolean("replace-on-rebalance", false), "replace a Spot node when EC2 recommends rebalancing it, not only on its interruption warning [REPLACE_ON_REBALANCE]")
	fs.BoolVar(&o.ReturnToPreferredPool, "return-to-preferred-pool", env.boolean("return-to-preferred-pool", true), "move nodes of a fallback NodePool back to the higher-weight pool that differs from it only by weight and capacity type (Spot after an On-Demand fallback) once it can launch again, replacement first; a NodePool annotated backstop.sh/return-to-preferred-pool=false is left alone [RETURN_TO_PREFERRED_POOL]")
	fs.DurationVar(&o.ReturnCooldown, "return-cooldown", env.duration("return-cooldown", 5*time.Minute), "a return uses no offering EC2 refused within this long, and a node whose return was rolled back waits this long [RETURN_COOLDOWN]")
	fs.IntVar(&o.ReturnMaxPerInterval, "return-max-per-interval", env.integer("return-max-per-interval", 10), "returns that may start per --return-interval, cluster-wide, rolled back ones included [RETURN_MAX_PER_INTERVAL]")
	fs.DurationVar(&o.ReturnInterval, "return-interval", env.duration("return-interval", 5*time.Minute), "the window --return-max-per-interval counts in [RETURN_INTERVAL]")
	fs.Float64Var(&o.ReturnMinSaving, "return-min-saving", env.float("return-min-saving", 0.1), "the least saving a return must bring, as a fraction of the node's hourly price [RETURN_MIN_SAVING]")
	fs.DurationVar(&o.ReturnTimeout, "return-timeout", env.duration("return-timeout", 20*time.Minute), "a return whose replacements have not initialized after this long is rolled back [RETURN_TIMEOUT]")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if env.err != nil {
		return nil, env.err
	}
	return o, o.Validate()
}

// Validate checks the options together and says how to fix the first problem.
func (o *Options) Validate() error {
	var errs []error
	if strings.TrimSpace(o.ClusterName) == "" {
		errs = append(errs, errors.New("cluster name is required: set --cluster-name or CLUSTER_NAME to the name of the cluster Backstop provisions nodes for"))
	}
	switch o.LogLevel {
	case "debug", "info", "error":
	default:
		errs = append(errs, fmt.Errorf("--log-level (LOG_LEVEL) %q is not a level: use debug, info or error", o.LogLevel))
	}
	switch o.LogFormat {
	case "json", "console":
	default:
		errs = append(errs, fmt.Errorf("--log-format (LOG_FORMAT) %q is not a format: use json or console", o.LogFormat))
	}
	if o.BatchIdleDuration <= 0 || o.BatchMaxDuration <= 0 || o.BatchIdleDuration > o.BatchMaxDuration {
		errs = append(errs, fmt.Errorf("--batch-idle-duration (%s) and --batch-max-duration (%s) must be positive, idle no longer than max (BATCH_IDLE_DURATION, BATCH_MAX_DURATION)", o.BatchIdleDuration, o.BatchMaxDuration))
	}
	switch o.PreferencePolicy {
	case "Respect", "Ignore":
	default:
		errs = append(errs, fmt.Errorf("--preference-policy (PREFERENCE_POLICY) %q is not a policy: use Respect or Ignore", o.PreferencePolicy))
	}
	if o.KubeClientQPS <= 0 || o.KubeClientBurst <= 0 {
		errs = append(errs, fmt.Errorf("--kube-client-qps (%g) and --kube-client-burst (%d) must be positive (KUBE_CLIENT_QPS, KUBE_CLIENT_BURST)", o.KubeClientQPS, o.KubeClientBurst))
	}
	if o.LeaderElect && (o.RetryPeriod <= 0 || o.RenewDeadline <= o.RetryPeriod || o.LeaseDuration <= o.RenewDeadline) {
		errs = append(errs, fmt.Errorf("leader election needs --leader-election-retry-period (%s) < --leader-election-renew-deadline (%s) < --leader-election-lease-duration (%s), all positive",
			o.RetryPeriod, o.RenewDeadline, o.LeaseDuration))
	}
	if o.ReturnCooldown < 0 || o.ReturnMaxPerInterval < 0 || o.ReturnInterval <= 0 || o.ReturnTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--return-cooldown (%s) and --return-max-per-interval (%d) must not be negative, --return-interval (%s) and --return-timeout (%s) must be positive (RETURN_COOLDOWN, RETURN_MAX_PER_INTERVAL, RETURN_INTERVAL, RETURN_TIMEOUT)",
			o.ReturnCooldown, o.ReturnMaxPerInterval, o.ReturnInterval, o.ReturnTimeout))
	}
	if o.ReturnMinSaving < 0 || o.ReturnMinSaving >= 1 {
		errs = append(errs, fmt.Errorf("--return-min-saving (RETURN_MIN_SAVING) %g is not a fraction of a price: use a value from 0 (any saving) to below 1, such as 0.1 for 10%%", o.ReturnMinSaving))
	}
	if o.LeaderElect && o.LeaderElectionNamespace == "" {
		errs = append(errs, errors.New("leader election needs a namespace: set --leader-election-namespace or LEADER_ELECTION_NAMESPACE"))
	}
	return errors.Join(errs...)
}

// defaultNamespace is the pod's namespace when the chart sets SYSTEM_NAMESPACE,
// else kube-system.
func defaultNamespace(getenv func(string) string) string {
	if ns := getenv("SYSTEM_NAMESPACE"); ns != "" {
		return ns
	}
	return "kube-system"
}

// envDefaults turns environment variables into flag defaults and remembers the
// first one that does not parse.
type envDefaults struct {
	getenv func(string) string
	err    error
}

func envName(flagName string) string {
	return strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func (e *envDefaults) str(flagName, def string) string {
	if v := e.getenv(envName(flagName)); v != "" {
		return v
	}
	return def
}

func (e *envDefaults) boolean(flagName string, def bool) bool {
	return parseEnv(e, flagName, def, strconv.ParseBool, "a boolean: use true or false")
}

func (e *envDefaults) float(flagName string, def float64) float64 {
	return parseEnv(e, flagName, def, func(v string) (float64, error) { return strconv.ParseFloat(v, 64) }, "a number: use a value such as 200 or 50.5")
}

func (e *envDefaults) integer(flagName string, def int) int {
	return parseEnv(e, flagName, def, strconv.Atoi, "a whole number: use a value such as 300")
}

func (e *envDefaults) int64(flagName string, def int64) int64 {
	return parseEnv(e, flagName, def, func(v string) (int64, error) { return strconv.ParseInt(v, 10, 64) }, "a whole number of bytes: use a value such as 1073741824")
}

func (e *envDefaults) duration(flagName string, def time.Duration) time.Duration {
	return parseEnv(e, flagName, def, time.ParseDuration, "a duration: use a value such as 1s, 500ms or 3m")
}

// parseEnv reads a flag's environment variable with parse; def when it is
// unset. The first value that does not parse is remembered with what it
// should have been.
func parseEnv[T any](e *envDefaults, flagName string, def T, parse func(string) (T, error), want string) T {
	v := e.getenv(envName(flagName))
	if v == "" {
		return def
	}
	out, err := parse(v)
	if err != nil && e.err == nil {
		e.err = fmt.Errorf("%s=%q is not %s", envName(flagName), v, want)
	}
	return out
}

// ApplyMemoryLimit sets Go's soft memory limit to 90% of the container's
// (MemoryLimit), so garbage collection works harder before the kernel's OOM
// killer would act; GOMEMLIMIT, when set, wins. It returns the limit in force.
func ApplyMemoryLimit(o *Options, getenv func(string) string) int64 {
	if o.MemoryLimit > 0 && getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(o.MemoryLimit / 10 * 9)
	}
	return debug.SetMemoryLimit(-1)
}
