// Command benche2e is the side-by-side benchmark of `make bench-e2e`: it
// measures, end to end, how long a user waits for capacity with Backstop and
// with Karpenter (its own kwok provider, pinned in tools/karpenter) on the same
// local control plane, NodePool, instance types and workload.
//
// Each run starts a fresh local cluster (etcd, kube-apiserver, kube-scheduler,
// kube-controller-manager, KWOK), one provisioner as its own process, a
// NodePool held to one vCPU size, waits for the NodePool to be Ready, then
// creates a Deployment of N pods of 1 CPU and 1 GiB and waits until all of
// them run. Runs alternate between the provisioners. Karpenter's kwok provider
// is given the instance types, zones and prices Backstop discovers from the
// EC2 simulator, so both choose from the same offerings at the same prices.
//
// It is a benchmark, not a test: `make test` does not run it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	"github.com/go-logr/logr"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws"
	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws/catalog"
	"github.com/backstop-sh/backstop/test"
	"github.com/backstop-sh/backstop/test/ec2sim"
	"github.com/backstop-sh/backstop/test/local"
)

func main() {
	sizes := flag.String("n", "100,500,2000", "pod counts, comma separated")
	pairs := flag.Int("pairs", 2, "runs of each provisioner per pod count, alternating Backstop and Karpenter")
	vcpu := flag.Int64("vcpu", 8, "the vCPU size both NodePools are held to (equal node counts)")
	out := flag.String("out", filepath.Join(test.Root, "bin", "bench-e2e"), "directory for each run's logs and the results (results.json)")
	karpenter := flag.String("karpenter", filepath.Join(test.Root, "bin", "karpenter-kwok"), "Karpenter's kwok provider (make bin/karpenter-kwok)")
	karpenterCRDs := flag.String("karpenter-crds", filepath.Join(test.Root, "bin", "karpenter-crds"), "Karpenter's CRDs, of the same version")
	backstopFlags := flag.String("backstop-flags", "", "extra flags for Backstop, space separated (e.g. --enable-profiling --metrics-bind-address=127.0.0.1:9090)")
	only := flag.String("only", "", "run one provisioner only: backstop or karpenter")
	flag.Parse()

	var ns []int
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			fail(fmt.Errorf("-n: %q is not a positive pod count", s))
		}
		ns = append(ns, n)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b := &bench{ctx: ctx, out: *out, vcpu: *vcpu, karpenter: *karpenter, karpenterCRDs: *karpenterCRDs, backstopFlags: strings.Fields(*backstopFlags)}
	if err := os.MkdirAll(b.out, 0o755); err != nil {
		fail(err)
	}
	harnessLog, err := os.Create(filepath.Join(b.out, "harness.log"))
	if err != nil {
		fail(err)
	}
	defer harnessLog.Close()
	b.log = zap.New(zap.WriteTo(harnessLog), zap.Level(zapcore.DebugLevel))
	ctrllog.SetLogger(b.log)
	if err := b.prepare(); err != nil {
		fail(err)
	}
	var results []result
	failed := 0
	for _, n := range ns {
		for i := 0; i < *pairs; i++ {
			order := []string{backstop, karpenterName}
			if i%2 == 1 {
				order = []string{karpenterName, backstop}
			}
			for _, p := range order {
				if *only != "" && *only != p {
					continue
				}
				r, err := b.run(p, n, i+1)
				if ctx.Err() != nil {
					fail(ctx.Err())
				}
				if err != nil {
					// One failed run does not lose the others; it is
					// reported and counted as failed.
					r.Error = err.Error()
					failed++
					fmt.Printf("%s N=%d run %d FAILED: %v (logs in %s)\n", p, n, i+1, err, r.Dir)
				} else {
					fmt.Println(r.line())
				}
				results = append(results, r)
				if err := writeResults(*out, results); err != nil {
					fail(err)
				}
			}
		}
	}
	summary(os.Stdout, results)
	if failed > 0 {
		fail(fmt.Errorf("%d of %d runs failed", failed, len(results)))
	}
}

// writeResults writes every run so far to results.json.
func writeResults(dir string, results []result) error {
	data, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "results.json"), data, 0o644)
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "bench-e2e: %v\n", err)
	os.Exit(1)
}

const (
	backstop      = "backstop"
	karpenterName = "karpenter"
)

type bench struct {
	out, karpenter, karpenterCRDs string
	vcpu                          int64
	log                           logr.Logger
	// ctx ends on Ctrl-C: the run under way stops its cluster and nothing is left running.
	ctx            context.Context
	backstopFlags  []string
	backstopBinary string
	// typesFile is Karpenter's instance-types file: what Backstop discovers.
	typesFile string
	// types are the instance types of the benchmark's size, by name.
	types map[string]bool
	// prices are $/h by instance type, zone and capacity type.
	prices map[string]float64
}

func priceKey(instanceType, zone, capacityType string) string {
	return instanceType + "/" + zone + "/" + capacityType
}

// prepare builds Backstop and writes Karpenter's instance-types file from
// what Backstop discovers in the simulator.
func (b *bench) prepare() error {
	for _, f := range []string{b.karpenter, b.karpenterCRDs} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%w: `make bench-e2e` builds it", err)
		}
	}
	var err error
	if b.backstopBinary, err = test.BuildController(b.out); err != nil {
		return err
	}
	sim, err := ec2sim.New(ec2sim.Config{}, clock.RealClock{})
	if err != nil {
		return err
	}
	srv := httptest.NewServer(sim)
	defer srv.Close()
	offerings, err := aws.NewOfferings(test.EC2Client(srv.URL), "us-east-1", clock.RealClock{}, time.Hour, nil,
		aws.AllocatableOptions{VMMemoryOverheadPercent: 0.075})
	if err != nil {
		return err
	}
	discovered, err := offerings.InstanceTypes(context.Background(), nil)
	if err != nil {
		return err
	}
	facts, err := catalog.Load()
	if err != nil {
		return err
	}
	sized := map[string]catalog.InstanceType{}
	for _, f := range facts {
		if f.VCPU == b.vcpu && f.Arch == "amd64" && f.GPU == nil && !f.BareMetal {
			sized[f.Name] = f
		}
	}
	b.types, b.prices = map[string]bool{}, map[string]float64{}
	var kwokTypes []kwokInstanceType
	for _, it := range discovered {
		f, ok := sized[it.Name]
		if !ok {
			continue
		}
		b.types[it.Name] = true
		kt := kwokInstanceType{Name: it.Name, Architecture: f.Arch, OperatingSystems: []string{"linux"}, Resources: corev1.ResourceList{}}
		for name, q := range it.Capacity.List() {
			if name == corev1.ResourceCPU || name == corev1.ResourceMemory || name == corev1.ResourcePods || name == corev1.ResourceEphemeralStorage {
				kt.Resources[name] = q
			}
		}
		for _, o := range it.Offerings {
			b.prices[priceKey(it.Name, o.Zone, o.CapacityType)] = o.Price
			kt.Offerings = append(kt.Offerings, kwokOffering{Price: o.Price, Available: true, Requirements: []corev1.NodeSelectorRequirement{
				{Key: v1.CapacityTypeLabelKey, Operator: corev1.NodeSelectorOpIn, Values: []string{o.CapacityType}},
				{Key: corev1.LabelTopologyZone, Operator: corev1.NodeSelectorOpIn, Values: []string{o.Zone}},
			}})
		}
		kwokTypes = append(kwokTypes, kt)
	}
	if len(kwokTypes) == 0 {
		return fmt.Errorf("-vcpu %d: no amd64 instance type of that size is sold in the simulator", b.vcpu)
	}
	sort.Slice(kwokTypes, func(i, j int) bool { return kwokTypes[i].Name < kwokTypes[j].Name })
	data, err := json.MarshalIndent(kwokTypes, "", " ")
	if err != nil {
		return err
	}
	b.typesFile = filepath.Join(b.out, "karpenter-instance-types.json")
	fmt.Printf("bench-e2e: %d instance types of %d vCPU (amd64) for both provisioners; Karpenter's copy in %s\n", len(kwokTypes), b.vcpu, b.typesFile)
	return os.WriteFile(b.typesFile, data, 0o644)
}

// kwokInstanceType is an entry of the kwok provider's instance-types file.
type kwokInstanceType struct {
	Name             string              `json:"name"`
	Offerings        []kwokOffering      `json:"offerings"`
	Architecture     string              `json:"architecture"`
	OperatingSystems []string            `json:"operatingSystems"`
	Resources        corev1.ResourceList `json:"resources"`
}

type kwokOffering struct {
	Price        float64                          `json:"Price"`
	Available    bool                             `json:"Available"`
	Requirements []corev1.NodeSelectorRequirement `json:"Requirements"`
}

// result is one run.
type result struct {
	Provisioner string `json:"provisioner"`
	Pods        int    `json:"pods"`
	Run         int    `json:"run"`
	Dir         string `json:"dir"`
	// Error says why the run failed; its figures are then incomplete.
	Error string `json:"error,omitempty"`
	// Start is when the Deployment was created; the other times count from it.
	Start time.Time `json:"start"`
	// LastPodCreated is from the Deployment's creation to the last pod's.
	LastPodCreated time.Duration `json:"lastPodCreated"`
	// LastClaimAfterLastPod is from the last pod's creation to the last
	// NodeClaim's (negative when the last NodeClaim came first).
	LastClaimAfterLastPod time.Duration `json:"lastClaimAfterLastPod"`
	// AllRunning is from the Deployment's creation to the last pod Running.
	AllRunning time.Duration `json:"allRunning"`
	// FirstClaim, LastNode and FirstRunning are from the Deployment's
	// creation to the first NodeClaim, the last Node and the first pod Running.
	FirstClaim   time.Duration `json:"firstClaim"`
	LastNode     time.Duration `json:"lastNode"`
	FirstRunning time.Duration `json:"firstRunning"`
	// LastUnschedulable is from the Deployment's creation to the last pod
	// kube-scheduler found no room for (first verdict per pod).
	LastUnschedulable time.Duration `json:"lastUnschedulable"`
	NodeClaims        int           `json:"nodeClaims"`
	// PodsDeleted counts pods deleted before all ran (the harness log says
	// where): none in a clean run.
	PodsDeleted int     `json:"podsDeleted"`
	Nodes       int     `json:"nodes"`
	PricePerH   float64 `json:"pricePerHour"`
	// PeakRSS is the provisioner's peak resident memory (VmHWM), in bytes,
	// over its whole life up to all pods Running.
	PeakRSS int64 `json:"peakRSSBytes"`
	// CPU is the provisioner's CPU time (user + system) from the
	// Deployment's creation to all pods Running.
	CPU time.Duration `json:"cpu"`
	// CPUTotal is its CPU time from its start, start-up included.
	CPUTotal time.Duration `json:"cpuTotal"`
}

func (r result) line() string {
	return fmt.Sprintf("%-9s N=%-5d run %d: last pod %.2fs, last unschedulable %.2fs, first NodeClaim %.2fs, last NodeClaim %+.2fs after the last pod, last Node %.2fs, first Running %.2fs, all Running %.2fs; %d NodeClaims, %d nodes, %d pods deleted, $%.3f/h, peak RSS %d MB, CPU %.2fs (%.2fs with start-up)",
		r.Provisioner, r.Pods, r.Run, r.LastPodCreated.Seconds(), r.LastUnschedulable.Seconds(), r.FirstClaim.Seconds(), r.LastClaimAfterLastPod.Seconds(),
		r.LastNode.Seconds(), r.FirstRunning.Seconds(), r.AllRunning.Seconds(),
		r.NodeClaims, r.Nodes, r.PodsDeleted, r.PricePerH, r.PeakRSS>>20, r.CPU.Seconds(), r.CPUTotal.Seconds())
}

var (
	nodePoolGVR  = schema.GroupVersionResource{Group: "karpenter.sh", Version: "v1", Resource: "nodepools"}
	nodeClaimGVR = schema.GroupVersionResource{Group: "karpenter.sh", Version: "v1", Resource: "nodeclaims"}
)

func (b *bench) run(provisioner string, n, run int) (r result, err error) {
	r = result{Provisioner: provisioner, Pods: n, Run: run, Dir: filepath.Join(b.out, fmt.Sprintf("%d-%d-%s", n, run, provisioner))}
	if err := os.RemoveAll(r.Dir); err != nil {
		return r, err
	}
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Minute)
	defer cancel()
	// The control plane's own clients are not what is measured: they get
	// room enough that pods are created and bound as fast as they can be.
	fast := []string{"--kube-api-qps=1000", "--kube-api-burst=2000"}
	opts := local.Options{
		Bin: filepath.Join(test.Root, "bin"), Dir: r.Dir, Log: b.log,
		SchedulerFlags: fast, ControllerManagerFlags: append(fast, "--concurrent-replicaset-syncs=5"),
	}
	// The cluster is measured as one running for a while: its instance
	// profile reached EC2 long ago (Karpenter's kwok provider has none).
	opts.Simulator.IAMPropagation = ec2sim.Duration{Duration: -1}
	if provisioner == backstop {
		opts.ControllerBinary = b.backstopBinary
		// Leader election off, as for Karpenter: the local cluster's
		// failover timings (a 2 s renew deadline, for the chaos suite) are
		// missed when 2,000 pods load the API server, and a controller that
		// loses its lease stops, with nobody here to restart it.
		opts.ControllerFlags = append([]string{"--leader-elect=false"}, b.backstopFlags...)
	} else {
		opts.NoBackstop = true
		opts.CRDDirs = []string{b.karpenterCRDs}
	}
	cluster, err := local.Start(ctx, opts)
	if err != nil {
		return r, err
	}
	defer cluster.Stop()

	var proc *os.Process
	if provisioner == backstop {
		proc = cluster.ControllerProcess()
		err = apply(ctx, cluster.Config, backstopManifests(b.vcpu))
	} else {
		proc, err = b.startKarpenter(cluster)
		if err == nil {
			err = apply(ctx, cluster.Config, karpenterManifests(b.vcpu))
		}
	}
	if err != nil {
		return r, err
	}
	dyn, err := dynamic.NewForConfig(cluster.Config)
	if err != nil {
		return r, err
	}
	if err := awaitReady(ctx, dyn); err != nil {
		return r, err
	}
	// Settle: both provisioners have started their informers and loops.
	time.Sleep(2 * time.Second)

	tl, err := watch(ctx, cluster.Config, b.log.WithValues("run", filepath.Base(r.Dir)))
	if err != nil {
		return r, err
	}
	cpu0, err := cpuTime(proc.Pid)
	if err != nil {
		return r, err
	}
	tl.mu.Lock()
	tl.want = n
	tl.mu.Unlock()
	start := time.Now()
	if err := cluster.Client.Create(ctx, local.Inflate(n)); err != nil {
		return r, err
	}
	if err := tl.awaitRunning(ctx); err != nil {
		return r, fmt.Errorf("%w (%d of %d pods Running)", err, tl.running(), n)
	}
	cpu1, err := cpuTime(proc.Pid)
	if err != nil {
		return r, err
	}
	r.CPU, r.CPUTotal = cpu1-cpu0, cpu1
	if r.PeakRSS, err = peakRSS(proc.Pid); err != nil {
		return r, err
	}
	tl.mu.Lock()
	defer tl.mu.Unlock()
	r.Start = start
	r.AllRunning = tl.allRunning.Sub(start)
	r.LastPodCreated = tl.lastPod.Sub(start)
	r.LastClaimAfterLastPod = tl.lastClaim.Sub(tl.lastPod)
	r.NodeClaims = tl.claims
	r.PodsDeleted = tl.deleted
	r.FirstClaim = tl.firstClaim.Sub(start)
	r.LastUnschedulable = tl.lastUnschedulable.Sub(start)
	r.LastNode = tl.lastNode.Sub(start)
	r.FirstRunning = tl.firstRunning.Sub(start)

	var nodes corev1.NodeList
	if err := cluster.Client.List(ctx, &nodes); err != nil {
		return r, err
	}
	r.Nodes = len(nodes.Items)
	// The price is that of every NodeClaim launched, registered or not: a
	// node asked for is paid for.
	claims, err := dyn.Resource(nodeClaimGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return r, err
	}
	for _, claim := range claims.Items {
		l := claim.GetLabels()
		key := priceKey(l[corev1.LabelInstanceTypeStable], l[corev1.LabelTopologyZone], l[v1.CapacityTypeLabelKey])
		p, ok := b.prices[key]
		if !ok {
			return r, fmt.Errorf("nodeclaim %s: no price for %s (instance type/zone/capacity type)", claim.GetName(), key)
		}
		r.PricePerH += p
	}
	return r, nil
}

// startKarpenter runs Karpenter's kwok provider as its own process, out of
// cluster, with its defaults except for the ports and leader election.
func (b *bench) startKarpenter(cluster *local.Cluster) (*os.Process, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(b.karpenter)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+cluster.Kubeconfig, "DISABLE_LEADER_ELECTION=true",
		"METRICS_PORT="+strconv.Itoa(ports[0]), "HEALTH_PROBE_PORT="+strconv.Itoa(ports[1]),
		"INSTANCE_TYPES_FILE_PATH="+b.typesFile, "SYSTEM_NAMESPACE=default", "LOG_LEVEL=info")
	if err := cluster.StartProcess("karpenter", cmd); err != nil {
		return nil, err
	}
	return cmd.Process, nil
}

func freePorts(n int) ([]int, error) {
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// The NodePools are the same but for the node class and the label that
// carries the vCPU count (each provider publishes its own).
const nodePool = `apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: bench}
spec:
  template:
    spec:
      nodeClassRef: {group: %s, kind: %s, name: default}
      expireAfter: Never
      requirements:
      - {key: karpenter.sh/capacity-type, operator: In, values: [spot, on-demand]}
      - {key: kubernetes.io/arch, operator: In, values: [amd64]}
      - {key: %s, operator: In, values: ["%d"]}
  disruption:
    consolidationPolicy: WhenEmpty
    consolidateAfter: 10m
`

func backstopManifests(vcpu int64) string {
	return fmt.Sprintf(nodePool, "karpenter.k8s.aws", "EC2NodeClass", "karpenter.k8s.aws/instance-cpu", vcpu) + `---
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata: {name: default}
spec:
  role: KarpenterNodeRole-local
  amiSelectorTerms: [{alias: al2023@latest}]
  subnetSelectorTerms: [{tags: {karpenter.sh/discovery: local}}]
  securityGroupSelectorTerms: [{tags: {karpenter.sh/discovery: local}}]
`
}

func karpenterManifests(vcpu int64) string {
	return fmt.Sprintf(nodePool, "karpenter.kwok.sh", "KWOKNodeClass", "karpenter.kwok.sh/instance-cpu", vcpu) + `---
apiVersion: karpenter.kwok.sh/v1alpha1
kind: KWOKNodeClass
metadata: {name: default}
`
}

func apply(ctx context.Context, cfg *rest.Config, manifests string) error {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	for _, doc := range strings.Split(manifests, "\n---\n") {
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
			return err
		}
		gvk := obj.GroupVersionKind()
		gvr := schema.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: strings.ToLower(gvk.Kind) + "es"}
		if !strings.HasSuffix(gvk.Kind, "Class") {
			gvr.Resource = strings.ToLower(gvk.Kind) + "s"
		}
		if _, err := dyn.Resource(gvr).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating %s %s: %w", gvk.Kind, obj.GetName(), err)
		}
	}
	return nil
}

// awaitReady waits until the NodePool says it can launch.
func awaitReady(ctx context.Context, dyn dynamic.Interface) error {
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		np, err := dyn.Resource(nodePoolGVR).Get(ctx, "bench", metav1.GetOptions{})
		if err == nil {
			conds, _, _ := unstructured.NestedSlice(np.Object, "status", "conditions")
			for _, c := range conds {
				m, _ := c.(map[string]any)
				if m["type"] == "Ready" && m["status"] == "True" {
					return nil
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return errors.New("the NodePool did not turn Ready within 3 minutes")
}

// timeline records, as this process sees them through watches, when pods and
// NodeClaims were created and when pods started running.
type timeline struct {
	mu                                 sync.Mutex
	lastPod, lastClaim, allRunning     time.Time
	firstClaim, lastNode, firstRunning time.Time
	// lastUnschedulable is when kube-scheduler last marked a pod
	// unschedulable for the first time: the earliest a provisioner that
	// waits for that verdict can see the pod.
	lastUnschedulable time.Time
	unschedulable     map[string]bool
	// deleted counts pods deleted before all ran.
	deleted             int
	taints              func(node string) []corev1.Taint
	claims, want, added int
	isRunning           map[string]bool
	done                chan struct{}
}

func (t *timeline) running() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.isRunning)
}

func (t *timeline) awaitRunning(ctx context.Context) error {
	select {
	case <-t.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("pods not all Running: %w", ctx.Err())
	}
}

func watch(ctx context.Context, cfg *rest.Config, logger logr.Logger) (*timeline, error) {
	t := &timeline{isRunning: map[string]bool{}, unschedulable: map[string]bool{}, done: make(chan struct{})}
	// The times are when this process sees each object, so its watches must
	// not wait on one another: over one HTTP/2 connection the NodeClaim
	// events queued behind the pod and node events, and in one 2,000-pod run
	// the last NodeClaim was seen 1.8 s after Backstop had created it.
	// HTTP/1.1 gives each watch a connection of its own.
	cfg = rest.CopyConfig(cfg)
	cfg.NextProtos = []string{"http/1.1"}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	pods := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace("default")).Core().V1().Pods().Informer()
	podEvent := func(obj any, added bool) {
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			return
		}
		now := time.Now()
		t.mu.Lock()
		defer t.mu.Unlock()
		if !t.allRunning.IsZero() {
			return
		}
		if added && t.added < t.want {
			// Pods created later replace pods deleted (PodsDeleted).
			t.added++
			t.lastPod = now
		}
		if !t.unschedulable[pod.Name] {
			for _, c := range pod.Status.Conditions {
				if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
					t.unschedulable[pod.Name] = true
					t.lastUnschedulable = now
				}
			}
		}
		if pod.Status.Phase == corev1.PodRunning {
			if len(t.isRunning) == 0 {
				t.firstRunning = now
			}
			t.isRunning[pod.Name] = true
		}
		if t.want > 0 && len(t.isRunning) >= t.want {
			t.allRunning = now
			close(t.done)
		}
	}
	if _, err := pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { podEvent(obj, true) },
		UpdateFunc: func(_, obj any) { podEvent(obj, false) },
		DeleteFunc: func(obj any) {
			// Nothing should take a pod away in a scale-up; when something
			// does, say where it ran and what its node carried.
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			pod, ok := obj.(*corev1.Pod)
			if !ok {
				return
			}
			t.mu.Lock()
			t.deleted++
			t.mu.Unlock()
			logger.Info("pod deleted during the run", "pod", pod.Name, "node", pod.Spec.NodeName, "node-taints", fmt.Sprint(t.taints(pod.Spec.NodeName)))
		},
	}); err != nil {
		return nil, err
	}
	claims := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0).ForResource(nodeClaimGVR).Informer()
	if _, err := claims.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: func(any) {
		now := time.Now()
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.allRunning.IsZero() {
			if t.claims == 0 {
				t.firstClaim = now
			}
			t.lastClaim = now
			t.claims++
		}
	}}); err != nil {
		return nil, err
	}
	nodes := informers.NewSharedInformerFactory(cs, 0).Core().V1().Nodes().Informer()
	t.taints = func(name string) []corev1.Taint {
		obj, ok, _ := nodes.GetStore().GetByKey(name)
		if node, isNode := obj.(*corev1.Node); ok && isNode {
			return node.Spec.Taints
		}
		return nil
	}
	taintLog := func(verb string, obj any) {
		if node, ok := obj.(*corev1.Node); ok {
			logger.V(1).Info("node taints", "verb", verb, "node", node.Name, "taints", fmt.Sprint(node.Spec.Taints), "resourceVersion", node.ResourceVersion)
		}
	}
	if _, err := nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{UpdateFunc: func(old, obj any) {
		if o, n := old.(*corev1.Node), obj.(*corev1.Node); fmt.Sprint(o.Spec.Taints) != fmt.Sprint(n.Spec.Taints) {
			taintLog("update", obj)
		}
	}, AddFunc: func(obj any) {
		taintLog("add", obj)
		now := time.Now()
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.allRunning.IsZero() {
			t.lastNode = now
		}
	}}); err != nil {
		return nil, err
	}
	go nodes.RunWithContext(ctx)
	go pods.RunWithContext(ctx)
	go claims.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), pods.HasSynced, claims.HasSynced, nodes.HasSynced) {
		return nil, errors.New("watches did not sync")
	}
	return t, nil
}

// cpuTime is a process's user + system CPU time, from /proc.
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may hold spaces) start at state.
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	// USER_HZ is 100 on Linux.
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// peakRSS is a process's peak resident set (VmHWM), from /proc.
func peakRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmHWM", pid)
}

// summary prints, per pod count, each provisioner's median figures and the
// Backstop/Karpenter ratios.
func summary(w *os.File, results []result) {
	type key struct {
		n int
		p string
	}
	byKey := map[key][]result{}
	var ns []int
	for _, r := range results {
		if r.Error != "" {
			continue
		}
		k := key{r.Pods, r.Provisioner}
		if len(byKey[key{r.Pods, backstop}])+len(byKey[key{r.Pods, karpenterName}]) == 0 {
			ns = append(ns, r.Pods)
		}
		byKey[k] = append(byKey[k], r)
	}
	median := func(rs []result, f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		sort.Float64s(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	metrics := []struct {
		name string
		f    func(result) float64
		unit string
	}{
		{"last NodeClaim after last pod", func(r result) float64 { return r.LastClaimAfterLastPod.Seconds() }, "s"},
		{"all Running", func(r result) float64 { return r.AllRunning.Seconds() }, "s"},
		{"nodes", func(r result) float64 { return float64(r.Nodes) }, ""},
		{"$/h", func(r result) float64 { return r.PricePerH }, ""},
		{"peak RSS (MB)", func(r result) float64 { return float64(r.PeakRSS >> 20) }, ""},
		{"CPU during scale-up", func(r result) float64 { return r.CPU.Seconds() }, "s"},
	}
	fmt.Fprintln(w, "\nMedians per pod count (Backstop | Karpenter | ratio):")
	for _, n := range ns {
		b, k := byKey[key{n, backstop}], byKey[key{n, karpenterName}]
		fmt.Fprintf(w, "N=%d (%d + %d runs)\n", n, len(b), len(k))
		for _, m := range metrics {
			line := fmt.Sprintf("  %-30s", m.name)
			var bv, kv float64
			if len(b) > 0 {
				bv = median(b, m.f)
				line += fmt.Sprintf(" %10.3f%s", bv, m.unit)
			} else {
				line += fmt.Sprintf(" %11s", "-")
			}
			if len(k) > 0 {
				kv = median(k, m.f)
				line += fmt.Sprintf(" %10.3f%s", kv, m.unit)
			} else {
				line += fmt.Sprintf(" %11s", "-")
			}
			if len(b) > 0 && len(k) > 0 && kv != 0 {
				line += fmt.Sprintf("   %.2f×", bv/kv)
			}
			fmt.Fprintln(w, line)
		}
	}
}
