// Package local runs Backstop's whole loop on one machine: etcd and
// kube-apiserver (through envtest), kube-scheduler, kube-controller-manager,
// KWOK playing the kubelets, the EC2 simulator, a node agent that turns
// simulated instances into Nodes, and the controller. `make run` and the e2e
// suite both use it.
package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/backstop-sh/backstop/pkg/operator"
	"github.com/backstop-sh/backstop/test"
	"github.com/backstop-sh/backstop/test/ec2sim"
)

// Options shape a local cluster.
type Options struct {
	// Bin holds kube-apiserver, etcd, kube-scheduler, kube-controller-manager and kwok.
	Bin string
	// Dir receives the kubeconfig and the components' logs.
	Dir string
	// Simulator configures the EC2 simulator.
	Simulator ec2sim.Config
	// ControllerFlags are extra flags for Backstop.
	ControllerFlags []string
	// ControllerBinary, when set, runs Backstop as a separate process from
	// this binary (as users run it), which KillController and
	// StartController stop and start; otherwise it runs in this process.
	ControllerBinary string
	// LeaderElectionFlags are the leader election timings of the controller
	// process. Empty means the controller's own defaults (lease 15 s, renew
	// 10 s, retry 2 s), as the chart ships them; a suite that kills the
	// controller and wants a quick takeover passes FastFailover.
	LeaderElectionFlags []string
	// Log receives Backstop's logs.
	Log logr.Logger
	// BootTime is how long an instance takes to register its node.
	BootTime time.Duration
	// CRDDirs replace Backstop's CRDs (charts/backstop/crds) as the ones
	// installed, for a cluster another provisioner runs in.
	CRDDirs []string
	// NoBackstop leaves Backstop out: the cluster runs without a
	// provisioner, or with one started through StartProcess.
	NoBackstop bool
	// SchedulerFlags and ControllerManagerFlags are extra flags for
	// kube-scheduler and kube-controller-manager.
	SchedulerFlags, ControllerManagerFlags []string
	// Clock, when set, is the clock of the EC2 simulator and of Backstop
	// when it runs in this process: a test moves time on faster than it
	// passes. The other components run on real time.
	Clock clock.Clock
	// Charts installs the CRD chart and the controller chart with bin/helm
	// (instead of the CRDs alone) and runs Backstop as the chart's service
	// account with exactly the chart's RBAC, instead of as an admin.
	Charts bool
}

// Cluster is a running local cluster.
type Cluster struct {
	Options
	Kubeconfig string
	Config     *rest.Config
	Client     client.Client
	Sim        *ec2sim.Server
	SimURL     string

	env    *envtest.Environment
	cancel context.CancelFunc
	procs  []*exec.Cmd
	wg     sync.WaitGroup
	srv    *http.Server

	mu sync.Mutex
	// controllers are every controller process started; the last is current.
	controllers []*exec.Cmd
	// others are processes started through StartProcess.
	others []*exec.Cmd
	// ended records how each process that has ended ended, by its log name.
	ended map[string]string
	// controllerConfig and controllerKubeconfig are how Backstop reaches the
	// API server: as an admin, or as the chart's service account.
	controllerConfig     *rest.Config
	controllerKubeconfig string
}

// chartNamespace is where the charts are installed here; the controller's
// Lease lives there too.
const chartNamespace = "default"

// Helm runs bin/helm as the cluster's admin and returns its output, or an
// error with helm's own message.
func (c *Cluster) Helm(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.Bin, "helm"), append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(c.Dir, "helm", "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(c.Dir, "helm", "config"), "HELM_DATA_HOME="+filepath.Join(c.Dir, "helm", "data"))
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("helm %v: %w: %s", args[:min(2, len(args))], err, errOut.String())
	}
	return out.String(), nil
}

// installCharts installs Backstop as a user does, with bin/helm: the CRD
// chart, then the controller chart (its Deployment at zero replicas: the
// controller runs here, as the chart's service account), so a suite fails
// if a chart does not install or the controller needs a right the chart
// does not grant.
func (c *Cluster) installCharts(ctx context.Context) error {
	charts := filepath.Join(test.Root, "charts")
	if _, err := c.Helm(ctx, "install", "backstop-crd", filepath.Join(charts, "backstop-crd"), "--namespace", chartNamespace); err != nil {
		return err
	}
	if err := envtest.WaitForCRDs(c.Config, crdsOf(filepath.Join(charts, "backstop", "crds")), envtest.CRDInstallOptions{MaxTime: time.Minute, PollInterval: 100 * time.Millisecond}); err != nil {
		return err
	}
	if _, err := c.Helm(ctx, "install", "backstop", filepath.Join(charts, "backstop"), "--namespace", chartNamespace, "--skip-crds",
		"--set", "settings.clusterName="+clusterName(c.Simulator), "--set", "replicas=0"); err != nil {
		return err
	}
	out, err := c.Helm(ctx, "get", "manifest", "backstop", "--namespace", chartNamespace)
	if err != nil {
		return err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(out), 4096)
	saName := ""
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); err == io.EOF {
			break
		} else if err != nil {
			return err
		}
		if obj.GetKind() == "ServiceAccount" {
			saName = obj.GetName()
		}
	}
	if saName == "" {
		return errors.New("the chart installed no ServiceAccount")
	}
	user, err := c.env.ControlPlane.AddUser(envtest.User{
		Name:   "system:serviceaccount:" + chartNamespace + ":" + saName,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + chartNamespace, "system:authenticated"},
	}, nil)
	if err != nil {
		return err
	}
	c.controllerConfig = user.Config()
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return err
	}
	c.controllerKubeconfig = filepath.Join(c.Dir, "controller-kubeconfig")
	return os.WriteFile(c.controllerKubeconfig, kubeconfig, 0o600)
}

// Start brings the cluster up; Stop takes it down again, whatever failed.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	c := &Cluster{Options: o}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	if err := c.start(ctx); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context) error {
	crds := c.CRDDirs
	if len(crds) == 0 && !c.Charts {
		crds = []string{filepath.Join(test.Root, "charts", "backstop", "crds")}
	}
	c.env = &envtest.Environment{
		BinaryAssetsDirectory: c.Bin,
		CRDDirectoryPaths:     crds,
		ErrorIfCRDPathMissing: len(crds) > 0,
	}
	cfg, err := c.env.Start()
	if err != nil {
		return fmt.Errorf("starting etcd and kube-apiserver: %w", err)
	}
	c.Config = cfg
	user, err := c.env.ControlPlane.AddUser(envtest.User{Name: "backstop-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return err
	}
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, kubeconfig, 0o600); err != nil {
		return err
	}
	if c.Client, err = client.New(cfg, client.Options{Scheme: test.Scheme}); err != nil {
		return err
	}

	c.controllerConfig, c.controllerKubeconfig = cfg, c.Kubeconfig
	if c.Charts {
		if err := c.installCharts(ctx); err != nil {
			return fmt.Errorf("installing Backstop's charts: %w", err)
		}
	}

	runCtx, cancel := context.WithCancel(ctx)
	c.cancel = cancel
	for _, p := range []struct {
		name string
		args []string
	}{
		{"kube-scheduler", append([]string{"--kubeconfig=" + c.Kubeconfig, "--authentication-kubeconfig=" + c.Kubeconfig,
			"--authorization-kubeconfig=" + c.Kubeconfig, "--leader-elect=false", "--secure-port=0"}, c.SchedulerFlags...)},
		{"kube-controller-manager", append([]string{"--kubeconfig=" + c.Kubeconfig, "--authentication-kubeconfig=" + c.Kubeconfig,
			"--authorization-kubeconfig=" + c.Kubeconfig, "--leader-elect=false", "--secure-port=0",
			"--controllers=*,-serviceaccount-token,-nodeipam,-route,-service,-cloud-node-lifecycle",
			"--use-service-account-credentials=false", "--node-monitor-grace-period=40s"}, c.ControllerManagerFlags...)},
		{"kwok", []string{"--kubeconfig=" + c.Kubeconfig, "--manage-nodes-with-annotation-selector=" + kwokAnnotation + "=fake",
			"--config=" + filepath.Join(test.Root, "test", "local", "kwok-stages.yaml"),
			"--cidr=10.244.0.0/16", "--node-ip=10.0.0.1"}},
	} {
		if err := c.spawn(p.name, p.args...); err != nil {
			return err
		}
	}

	// EKS describes this cluster: nodes join only with its endpoint and CA.
	c.Simulator.EKS = &ec2sim.EKSCluster{Name: clusterName(c.Simulator), Endpoint: c.Config.Host, CA: c.Config.CAData,
		ServiceIPv4CIDR: "10.0.0.0/24", IPFamily: "ipv4", Version: "1.36"}
	if c.Simulator.Policy == nil && c.Simulator.PolicyFile == "" {
		// The controller's role has the shipped policy, as on AWS.
		c.Simulator.PolicyFile = test.ShippedPolicy
	}
	if c.Sim, err = ec2sim.New(c.Simulator, c.clock()); err != nil {
		return err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	c.SimURL = "http://" + lis.Addr().String()
	c.srv = &http.Server{Handler: c.Sim, ReadHeaderTimeout: 5 * time.Second}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		_ = c.srv.Serve(lis)
	}()

	agent := &NodeAgent{Client: c.Client, Sim: c.Sim, Cluster: clusterName(c.Simulator), BootTime: c.BootTime,
		Endpoint: c.Config.Host, CA: c.Config.CAData, Log: c.Log.WithName("node-agent"), Clock: c.clock()}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		agent.Run(runCtx)
	}()

	switch {
	case c.NoBackstop:
		return nil
	case c.ControllerBinary != "":
		return c.StartController()
	}
	args := append([]string{"--leader-elect=false"}, c.controllerArgs()...)
	opts, err := operator.ParseOptions(args, func(string) string { return "" }, os.Stderr)
	if err != nil {
		return err
	}
	op, err := operator.New(c.controllerConfig, opts, c.Log, test.AWSClients(c.SimURL), c.clock())
	if err != nil {
		return err
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if err := op.Start(runCtx); err != nil {
			c.Log.Error(err, "backstop stopped")
		}
	}()
	return nil
}

func (c *Cluster) clock() clock.Clock {
	if c.Clock == nil {
		return clock.RealClock{}
	}
	return c.Clock
}

// controllerArgs are the flags Backstop runs with here, the extra ones last.
func (c *Cluster) controllerArgs() []string {
	region := c.Simulator.Region
	if region == "" {
		region = "us-east-1"
	}
	return append([]string{"--cluster-name=" + clusterName(c.Simulator), "--metrics-bind-address=0",
		"--health-probe-bind-address=0", "--aws-region=" + region}, c.ControllerFlags...)
}

// FastFailover are leader election timings under which a replacement takes
// over within seconds of a kill. A leader that cannot renew within 2 s exits,
// as it must: on a machine also running other suites that can happen without
// any kill, so only a suite that kills the controller uses them.
var FastFailover = []string{"--leader-election-lease-duration=3s", "--leader-election-renew-deadline=2s", "--leader-election-retry-period=500ms"}

// StartController starts Backstop's binary as its own process, talking to
// the API server through the kubeconfig and to the simulator over HTTP, with
// leader election on (timings from LeaderElectionFlags). Its log is
// Dir/controller-N.log.
func (c *Cluster) StartController() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	args := append(append([]string{"--kubeconfig=" + c.controllerKubeconfig, "--aws-endpoint=" + c.SimURL,
		"--leader-elect=true", "--leader-election-namespace=default"}, c.LeaderElectionFlags...), c.controllerArgs()...)
	cmd := exec.Command(c.ControllerBinary, args...)
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=AKIDSIMULATOR", "AWS_SECRET_ACCESS_KEY=secret", "AWS_EC2_METADATA_DISABLED=true")
	if err := c.run(cmd, fmt.Sprintf("controller-%d", len(c.controllers)+1), syscall.SIGKILL); err != nil {
		return fmt.Errorf("starting %s: %w", c.ControllerBinary, err)
	}
	c.controllers = append(c.controllers, cmd)
	return nil
}

// StartProcess runs cmd for as long as the cluster runs, in a process group
// of its own with its output in Dir/<name>.log; Stop kills it.
func (c *Cluster) StartProcess(name string, cmd *exec.Cmd) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.run(cmd, name, syscall.SIGKILL); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	c.others = append(c.others, cmd)
	return nil
}

// ControllerProcess is the current controller process, nil when Backstop
// runs in this process or not at all.
func (c *Cluster) ControllerProcess() *os.Process {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := len(c.controllers); n > 0 {
		return c.controllers[n-1].Process
	}
	return nil
}

// KillController kills the controller process at once (SIGKILL), as a
// crash or an OOM kill would, and waits for it to be gone.
func (c *Cluster) KillController() { kill(c.currentController()) }

// currentController is the last controller process started, nil if none.
func (c *Cluster) currentController() *exec.Cmd {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := len(c.controllers); n > 0 {
		return c.controllers[n-1]
	}
	return nil
}

// StopController stops the controller process as Kubernetes stops a pod
// (SIGTERM), and waits for it to be gone.
func (c *Cluster) StopController() {
	cmd := c.currentController()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	deadline := time.Now().Add(30 * time.Second)
	for syscall.Kill(cmd.Process.Pid, 0) == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	kill(cmd)
}

// kill kills a process and its group with SIGKILL and waits until it is gone.
func kill(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	for syscall.Kill(cmd.Process.Pid, 0) == nil {
		time.Sleep(10 * time.Millisecond)
	}
}

func clusterName(cfg ec2sim.Config) string {
	if cfg.ClusterTag != "" {
		return cfg.ClusterTag
	}
	return "local"
}

// spawn starts a component with its output in Dir/<name>.log; it dies with us.
func (c *Cluster) spawn(name string, args ...string) error {
	cmd := exec.Command(filepath.Join(c.Bin, name), args...)
	if err := c.run(cmd, name, syscall.SIGTERM); err != nil {
		return fmt.Errorf("starting %s (build it with `make tools`): %w", name, err)
	}
	c.procs = append(c.procs, cmd)
	return nil
}

// run starts cmd in a process group of its own, with its output in
// Dir/<name>.log; it gets deathSignal when this process dies.
func (c *Cluster) run(cmd *exec.Cmd, name string, deathSignal syscall.Signal) error {
	logFile, err := os.Create(filepath.Join(c.Dir, name+".log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: deathSignal, Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return err
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		err := cmd.Wait()
		_ = logFile.Close()
		how := "exited with status 0"
		if err != nil {
			how = err.Error()
		}
		c.mu.Lock()
		if c.ended == nil {
			c.ended = map[string]string{}
		}
		c.ended[name] = how
		c.mu.Unlock()
	}()
	return nil
}

// ControllerReport says whether the current controller process still runs
// (or how it ended) and gives the end of its log, for a failed test to show.
func (c *Cluster) ControllerReport(lines int) string {
	c.mu.Lock()
	n := len(c.controllers)
	name := fmt.Sprintf("controller-%d", n)
	how, ended := c.ended[name]
	c.mu.Unlock()
	if n == 0 {
		return "no controller process was started"
	}
	state := name + " is running"
	if ended {
		state = name + " has ended: " + how
	}
	data, err := os.ReadFile(filepath.Join(c.Dir, name+".log"))
	if err != nil {
		return state + "; its log: " + err.Error()
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return state + "; the end of " + name + ".log:\n" + strings.Join(all, "\n")
}

// Stop stops every component and leaves nothing running.
func (c *Cluster) Stop() {
	c.mu.Lock()
	controllers := append(append([]*exec.Cmd{}, c.controllers...), c.others...)
	c.mu.Unlock()
	for _, cmd := range controllers {
		kill(cmd)
	}
	if c.cancel != nil {
		c.cancel()
	}
	for _, p := range c.procs {
		if p.Process != nil {
			_ = syscall.Kill(-p.Process.Pid, syscall.SIGTERM)
		}
	}
	if c.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = c.srv.Shutdown(ctx)
		cancel()
	}
	done := make(chan struct{})
	go func() {
		c.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		for _, p := range c.procs {
			if p.Process != nil {
				_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
			}
		}
	}
	if c.env != nil {
		if err := c.env.Stop(); err != nil && !errors.Is(err, context.Canceled) {
			c.Log.Error(err, "stopping the control plane")
		}
	}
}

// crdsOf lists the CRDs in dir's YAML files, for waiting on them.
func crdsOf(dir string) []*apiextensionsv1.CustomResourceDefinition {
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	var out []*apiextensionsv1.CustomResourceDefinition
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if utilyaml.Unmarshal(data, crd) == nil && crd.Name != "" {
			out = append(out, crd)
		}
	}
	return out
}
