// Command local runs Backstop's whole loop on this machine (`make run`): a
// control plane with kube-scheduler and kube-controller-manager, KWOK for the
// kubelets, the EC2 simulator and the controller. It applies the README's
// NodePools and EC2NodeClass, scales a Deployment up while Spot capacity runs
// out part way, and shows pods getting nodes until Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/controllers/disruption"
	"github.com/backstop-sh/backstop/pkg/operator"
	"github.com/backstop-sh/backstop/test"
	"github.com/backstop-sh/backstop/test/ec2sim"
	"github.com/backstop-sh/backstop/test/local"
)

func main() {
	replicas := flag.Int("replicas", 20, "replicas of the demo Deployment (1 CPU each)")
	spotCap := flag.Int("spot-capacity", 2, "Spot instances the simulated account can get before InsufficientInstanceCapacity")
	interruptEvery := flag.Duration("interrupt-every", 0, "warn a running Spot instance of its reclaim this often (0: never); the reclaim comes 2 minutes later, and Backstop replaces the node before it")
	metrics := flag.String("metrics-address", "127.0.0.1:8080", "where Backstop serves its Prometheus metrics")
	spotReturns := flag.Duration("spot-returns-after", 0, "lift the Spot cap after this long (0: never), and watch Backstop move the On-Demand fallback nodes back to Spot, replacement first; the demo runs Backstop with --return-cooldown=1m then, so it shows within minutes")
	flag.Parse()
	if err := run(demo{replicas: *replicas, spotCap: *spotCap, interruptEvery: *interruptEvery, metrics: *metrics, spotReturns: *spotReturns}); err != nil {
		fmt.Fprintf(os.Stderr, "make run: %v\n", err)
		os.Exit(1)
	}
}

const queue = "backstop-interruptions"

// demo is what make run shows.
type demo struct {
	replicas, spotCap           int
	interruptEvery, spotReturns time.Duration
	metrics                     string
}

func run(d demo) error {
	replicas, spotCap, metrics := d.replicas, d.spotCap, d.metrics
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir := filepath.Join(test.Root, "bin", "local")
	logFile, err := os.Create(filepath.Join(dir, "backstop.log"))
	if err != nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if logFile, err = os.Create(filepath.Join(dir, "backstop.log")); err != nil {
			return err
		}
	}
	defer logFile.Close()

	fmt.Println("Starting etcd, kube-apiserver, kube-scheduler, kube-controller-manager, KWOK, the EC2 simulator and Backstop…")
	cluster, err := local.Start(ctx, local.Options{
		Bin: filepath.Join(test.Root, "bin"), Dir: dir,
		Simulator: ec2sim.Config{Region: "ap-northeast-2", ClusterTag: "my-cluster", InterruptionQueue: queue, Faults: ec2sim.Faults{
			Capacity: []ec2sim.CapacityRule{{CapacityType: "spot", Max: spotCap}},
		}},
		ControllerFlags: controllerFlags(d),
		Log:             operator.NewLoggerTo(&operator.Options{LogLevel: "info", LogFormat: "json"}, logFile),
	})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("\nStopping everything…")
		cluster.Stop()
		fmt.Println("Stopped; nothing is left running.")
	}()
	fmt.Printf(`
  kubeconfig:  %s
  try:         KUBECONFIG=%s kubectl get nodepools,nodeclaims,nodes -L karpenter.sh/capacity-type
  logs:        %s/*.log
  EC2 API:     %s (admin: %s/admin/requests)
  metrics:     http://%s/metrics (draw the dashboard's panels: go run ./test/dashshot)

`, cluster.Kubeconfig, cluster.Kubeconfig, dir, cluster.SimURL, cluster.SimURL, metrics)

	objs, err := test.ReadManifests("examples.yaml")
	if err != nil {
		return err
	}
	for _, o := range objs {
		if o.GetName() == "batch-fallback" && d.spotReturns > 0 {
			// batch differs from it by more than capacity type (its types
			// and zones), so returns to it are opted into.
			o.SetAnnotations(map[string]string{disruption.ReturnAnnotation: "true"})
		}
		if err := cluster.Client.Create(ctx, o); err != nil {
			return fmt.Errorf("applying %s %s: %w", o.GetKind(), o.GetName(), err)
		}
		fmt.Printf("applied %s/%s\n", strings.ToLower(o.GetKind()), o.GetName())
	}
	fmt.Printf("Spot capacity is capped at %d instances; scaling deployment/inflate to %d replicas of 1 CPU…\n\n", spotCap, replicas)
	if err := cluster.Client.Create(ctx, local.Inflate(replicas)); err != nil {
		return err
	}
	if d.interruptEvery > 0 {
		go interrupt(ctx, cluster.Sim, d.interruptEvery)
	}
	if d.spotReturns > 0 {
		go func() {
			select {
			case <-ctx.Done():
			case <-time.After(d.spotReturns):
				cluster.Sim.SetFaults(ec2sim.Faults{})
				fmt.Printf("\n>>> Spot capacity returns: the cap is lifted. Once Backstop's Spot marks have expired (3m after the last refused launch)\n" +
					">>> and the cool-down has passed (1m here, 5m by default), it launches Spot replacements for the batch-fallback\n" +
					">>> nodes and drains each once its replacement has initialized.\n\n")
			}
		}()
	}
	return watch(ctx, cluster.Client, replicas)
}

func controllerFlags(d demo) []string {
	flags := []string{"--batch-idle-duration=1s", "--log-format=json", "--interruption-queue=" + queue, "--metrics-bind-address=" + d.metrics}
	if d.spotReturns > 0 {
		flags = append(flags, "--return-cooldown=1m")
	}
	return flags
}

// interrupt warns one running Spot instance of its reclaim every period, as
// EC2 does through the interruption queue.
func interrupt(ctx context.Context, sim *ec2sim.Server, every time.Duration) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		for _, inst := range sim.Instances() {
			if inst.CapacityType == "spot" && inst.State == "running" && !inst.Interrupted && sim.Interrupt(inst.ID) {
				fmt.Printf("\n>>> EC2 warns: Spot instance %s will be reclaimed in 2 minutes; watch its replacement arrive first.\n\n", inst.ID)
				break
			}
		}
	}
}

// watch prints a line whenever the picture changes, until ctx ends.
func watch(ctx context.Context, c client.Client, replicas int) error {
	start := time.Now()
	last, allRunning := "", false
	for {
		line, running := snapshot(ctx, c)
		if line != last {
			fmt.Printf("[%5.1fs] %s\n", time.Since(start).Seconds(), line)
			last = line
		}
		if running == replicas && !allRunning {
			allRunning = true
			fmt.Printf("\nAll %d pods are Running after %.1fs. Watching; Ctrl-C to stop.\n\n", replicas, time.Since(start).Seconds())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func snapshot(ctx context.Context, c client.Client) (string, int) {
	var pods corev1.PodList
	var claims v1.NodeClaimList
	var nodes corev1.NodeList
	var evs eventsv1.EventList
	if c.List(ctx, &pods, client.InNamespace("default"), client.MatchingLabels{"app": "inflate"}) != nil ||
		c.List(ctx, &claims) != nil || c.List(ctx, &nodes) != nil || c.List(ctx, &evs, client.InNamespace("default")) != nil {
		return "waiting for the API server", 0
	}
	pending, running := 0, 0
	for _, p := range pods.Items {
		switch {
		case p.Status.Phase == corev1.PodRunning:
			running++
		case p.Spec.NodeName == "":
			pending++
		}
	}
	groups := map[string][2]int{}
	for _, cl := range claims.Items {
		key := cl.Labels[v1.NodePoolLabelKey] + "/" + cl.Labels[v1.CapacityTypeLabelKey]
		if cl.Labels[v1.CapacityTypeLabelKey] == "" {
			key = cl.Labels[v1.NodePoolLabelKey] + "/launching"
		}
		g := groups[key]
		g[0]++
		for _, cond := range cl.Status.Conditions {
			if cond.Type == v1.ConditionReady && cond.Status == metav1.ConditionTrue {
				g[1]++
			}
		}
		groups[key] = g
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d (%d ready)", k, groups[k][0], groups[k][1]))
	}
	ready := 0
	for _, n := range nodes.Items {
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				ready++
			}
		}
	}
	fallback, back := "none", ""
	var newest, newestBack time.Time
	for _, e := range evs.Items {
		if e.Reason == "Fallback" && e.Regarding.Kind == "Pod" && e.CreationTimestamp.After(newest) {
			newest, fallback = e.CreationTimestamp.Time, e.Note
		}
		if (e.Reason == "ReturnToPreferredPool" || e.Reason == "ReturnedToPreferredPool" || e.Reason == "ReturnRolledBack") &&
			e.Regarding.Kind == "NodeClaim" && e.CreationTimestamp.After(newestBack) {
			newestBack, back = e.CreationTimestamp.Time, e.Regarding.Name+": "+e.Note
		}
	}
	line := fmt.Sprintf("pods pending %d, running %d | nodeclaims %s | nodes ready %d | last fallback: %s",
		pending, running, strings.Join(parts, ", "), ready, fallback)
	if back != "" {
		line += " | last return: " + back
	}
	return line, running
}
