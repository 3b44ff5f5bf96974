package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws"
	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws/catalog"
	"github.com/backstop-sh/backstop/test/ec2sim"
	"github.com/backstop-sh/backstop/test/nodeboot"
)

// kwokAnnotation marks the Nodes KWOK keeps alive: Ready, heartbeating, and
// running the pods bound to them.
const kwokAnnotation = "kwok.x-k8s.io/node"

// NodeAgent plays what boots on a new instance, and boots it only from its
// user data, as an AL2023 node does: nodeadm reads the NodeConfig (see
// test/nodeboot), and the kubelet registers a Node only when the config names
// this cluster, its API server and its CA, with the labels, taints, max pods
// and reservations the config gives, and the instance's provider id and
// capacity. An instance whose user data would not join never registers, and
// the agent logs why once. When the instance is gone, its pods stop (they
// are deleted at once) and it deletes the Node, as the cloud's node
// lifecycle controller would.
type NodeAgent struct {
	Client  client.Client
	Sim     *ec2sim.Server
	Cluster string
	// Endpoint and CA are the API server's URL and certificate authority
	// (PEM) a node must be given to join.
	Endpoint string
	CA       []byte
	Log      logr.Logger
	// Every is how often instances are looked at.
	Every time.Duration
	// BootTime is how long an instance takes from launch to registering its
	// node; none by default (EC2 on AWS takes tens of seconds).
	BootTime time.Duration
	// Clock is the simulator's, which stamps launch times; real when nil.
	Clock clock.Clock

	// refused remembers the instances that cannot boot, so each is logged once.
	refused sync.Map
}

func (a *NodeAgent) since(t time.Time) time.Duration {
	if a.Clock == nil {
		return time.Since(t)
	}
	return a.Clock.Since(t)
}

// Run syncs until ctx ends.
func (a *NodeAgent) Run(ctx context.Context) {
	every := a.Every
	if every == 0 {
		every = 500 * time.Millisecond
	}
	facts := map[string]catalog.InstanceType{}
	all, _ := catalog.Load()
	for _, f := range all {
		facts[f.Name] = f
	}
	for {
		if err := a.sync(ctx, facts); err != nil && ctx.Err() == nil {
			log.FromContext(ctx).Error(err, "node agent")
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

func (a *NodeAgent) sync(ctx context.Context, facts map[string]catalog.InstanceType) error {
	// One list per round, not a read per instance: with hundreds of
	// instances the agent would otherwise lag the launches by a minute, as
	// no kubelet does.
	var list corev1.NodeList
	if err := a.Client.List(ctx, &list); err != nil {
		return err
	}
	nodes := make(map[string]*corev1.Node, len(list.Items))
	for i := range list.Items {
		nodes[list.Items[i].Name] = &list.Items[i]
	}
	var (
		wg    sync.WaitGroup
		errMu sync.Mutex
		errs  []error
		slots = make(chan struct{}, 20)
	)
	do := func(f func() error) {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			if err := f(); err != nil {
				errMu.Lock()
				errs = append(errs, err)
				errMu.Unlock()
			}
		}()
	}
	for _, inst := range a.Sim.Instances() {
		if _, ours := inst.Tags[aws.ClusterTag(a.Cluster)]; !ours {
			continue
		}
		node, exists := nodes[inst.ID]
		switch {
		case inst.State == "terminated":
			if !exists {
				continue
			}
			// The machine is gone and its containers with it: what still
			// runs there stops now, whatever drain was under way.
			do(func() error {
				if err := a.killPods(ctx, node.Name); err != nil {
					return err
				}
				if node.DeletionTimestamp == nil {
					return client.IgnoreNotFound(a.Client.Delete(ctx, node))
				}
				return nil
			})
		case !exists && a.since(inst.LaunchTime) < a.BootTime:
			// Still booting.
		case !exists:
			if _, known := a.refused.Load(inst.ID); known {
				continue
			}
			node, err := a.boot(inst, facts[inst.Type])
			if err != nil {
				a.refused.Store(inst.ID, true)
				a.Log.Info("instance does not join: its user data would not bootstrap a node", "instance", inst.ID, "why", err.Error())
				continue
			}
			do(func() error {
				if err := a.Client.Create(ctx, node); client.IgnoreAlreadyExists(err) != nil {
					return fmt.Errorf("registering node for %s: %w", inst.ID, err)
				}
				return nil
			})
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// killPods deletes at once the pods bound to a node whose instance ended.
func (a *NodeAgent) killPods(ctx context.Context, node string) error {
	var pods corev1.PodList
	if err := a.Client.List(ctx, &pods, client.MatchingFields{"spec.nodeName": node}); err != nil {
		return err
	}
	for i := range pods.Items {
		if err := a.Client.Delete(ctx, &pods.Items[i], client.GracePeriodSeconds(0)); client.IgnoreNotFound(err) != nil {
			return err
		}
	}
	return nil
}

// boot is what the kubelet registers for an instance, from its user data,
// or why it never does.
func (a *NodeAgent) boot(inst ec2sim.Instance, f catalog.InstanceType) (*corev1.Node, error) {
	image, ok := a.Sim.Image(inst.ImageID)
	if !ok {
		return nil, fmt.Errorf("image %q does not exist: the instance has nothing to boot", inst.ImageID)
	}
	if arch := map[string]string{"x86_64": "amd64", "arm64": "arm64"}[image.Architecture]; arch != f.Arch {
		return nil, fmt.Errorf("image %s (%s) is for %s; a %s instance cannot boot it", image.ID, image.Name, image.Architecture, f.Arch)
	}
	// What reads the user data is the image's: Bottlerocket's settings API
	// reads TOML, AL2023's nodeadm a MIME archive of NodeConfigs, AL2's
	// cloud-init the scripts of one, which call /etc/eks/bootstrap.sh.
	read := nodeboot.Read
	windowsBuild := ""
	switch name := image.Name; {
	case strings.HasPrefix(name, "bottlerocket-"):
		read = nodeboot.ReadBottlerocket
	case strings.HasPrefix(name, "Windows_Server-"):
		read = nodeboot.ReadWindows
		year, _, _ := strings.Cut(strings.TrimPrefix(name, "Windows_Server-"), "-")
		if windowsBuild = aws.WindowsBuilds["windows"+year]; windowsBuild == "" {
			return nil, fmt.Errorf("image %s is a Windows Server this node agent does not know the build of", name)
		}
	case strings.HasPrefix(name, "amazon-eks-node-1"), strings.HasPrefix(name, "amazon-eks-gpu-node-"), strings.HasPrefix(name, "amazon-eks-arm64-node-"):
		read = nodeboot.ReadAL2
	}
	config, err := read(inst.UserData)
	if err != nil {
		return nil, err
	}
	c := config.Spec.Cluster
	switch {
	case c.Name != a.Cluster:
		return nil, fmt.Errorf("NodeConfig names cluster %q, this is %q", c.Name, a.Cluster)
	case c.APIServerEndpoint != a.Endpoint:
		return nil, fmt.Errorf("NodeConfig's apiServerEndpoint %q is not the API server %q: the kubelet cannot reach it", c.APIServerEndpoint, a.Endpoint)
	case !bytes.Equal(bytes.TrimSpace(c.CertificateAuthority), bytes.TrimSpace(a.CA)):
		return nil, errors.New("NodeConfig's certificateAuthority is not the cluster's CA: the kubelet does not trust the API server")
	}
	labels, err := config.Labels()
	if err != nil {
		return nil, err
	}
	for k := range labels {
		if !aws.KubeletMaySet(k) {
			return nil, fmt.Errorf("--node-labels has %s, which the NodeRestriction admission plugin refuses: the Node is never created", k)
		}
	}
	taints, err := config.Taints()
	if err != nil {
		return nil, err
	}
	// The kubelet's reservations and max pods, in the NodeClass's terms.
	var kubelet awsv1.KubeletConfiguration
	raw, err := json.Marshal(config.Spec.Kubelet.Config)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, &kubelet); err != nil {
		return nil, fmt.Errorf("kubelet config: %w", err)
	}
	for signal := range kubelet.EvictionSoft {
		if _, ok := kubelet.EvictionSoftGracePeriod[signal]; !ok {
			return nil, fmt.Errorf("soft eviction threshold %s has no grace period: the kubelet refuses to start", signal)
		}
	}
	node := a.node(inst, f, &kubelet, windowsBuild)
	withDevicePlugins(node, image.Name)
	for k, v := range labels {
		node.Labels[k] = v
	}
	node.Spec.Taints = taints
	return node, nil
}

// node is the Node a kubelet registers; a Windows one (windowsBuild set)
// says so in its OS and build labels, and the VPC resource controller
// advertises its pod addresses.
func (a *NodeAgent) node(inst ec2sim.Instance, f catalog.InstanceType, kubelet *awsv1.KubeletConfiguration, windowsBuild string) *corev1.Node {
	it, _ := aws.NewInstanceType(f, nil, aws.AllocatableOptions{Kubelet: kubelet, WindowsBuild: windowsBuild})
	arch := f.Arch
	os := "linux"
	if windowsBuild != "" {
		os = string(corev1.Windows)
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: inst.ID,
			Labels: map[string]string{
				corev1.LabelHostname: inst.ID, corev1.LabelInstanceTypeStable: inst.Type, corev1.LabelTopologyZone: inst.Zone,
				corev1.LabelArchStable: arch, corev1.LabelOSStable: os, "type": "kwok",
			},
			Annotations: map[string]string{kwokAnnotation: "fake"},
		},
		Spec: corev1.NodeSpec{ProviderID: fmt.Sprintf("aws:///%s/%s", inst.Zone, inst.ID)},
	}
	if windowsBuild != "" {
		node.Labels[corev1.LabelWindowsBuild] = windowsBuild
	}
	if it != nil {
		node.Status.Capacity = it.Capacity.List()
		node.Status.Allocatable = it.Allocatable().List()
	}
	return node
}

// withDevicePlugins keeps on the node only the device resources a device
// plugin of its image registers: the NVIDIA plugin and drivers come with
// EKS's NVIDIA images (AL2023 "nvidia", AL2 "gpu", Bottlerocket "nvidia"),
// the Neuron ones with the Neuron images (AL2023 "neuron", AL2 "gpu"). A GPU
// type booted from a standard image has GPUs but no resource for them, as on
// AWS, so a pod asking for one never fits it.
func withDevicePlugins(node *corev1.Node, imageName string) {
	name := strings.ToLower(imageName)
	serves := map[corev1.ResourceName]bool{
		"nvidia.com/gpu":       strings.Contains(name, "nvidia") || strings.Contains(name, "-gpu-"),
		aws.ResourceNeuron:     strings.Contains(name, "neuron") || strings.Contains(name, "-gpu-"),
		aws.ResourceNeuronCore: strings.Contains(name, "neuron") || strings.Contains(name, "-gpu-"),
	}
	for _, list := range []corev1.ResourceList{node.Status.Capacity, node.Status.Allocatable} {
		for r := range list {
			if served, device := serves[r]; device && !served {
				delete(list, r)
			}
		}
	}
}
