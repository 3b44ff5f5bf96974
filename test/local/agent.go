package local

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws"
	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws/catalog"
	"github.com/backstop-sh/backstop/test/ec2sim"
)

// kwokAnnotation marks the Nodes KWOK keeps alive: Ready, heartbeating, and
// running the pods bound to them.
const kwokAnnotation = "kwok.x-k8s.io/node"

// NodeAgent plays what boots on a new instance: when a simulated instance
// runs, it registers a Node with the instance's provider id, labels and
// capacity, tainted unregistered, as the kubelet would; when the instance is
// gone, its pods stop (they are deleted at once) and it deletes the Node, as
// the cloud's node lifecycle controller would.
type NodeAgent struct {
	Client  client.Client
	Sim     *ec2sim.Server
	Cluster string
	// Every is how often instances are looked at.
	Every time.Duration
	// BootTime is how long an instance takes from launch to registering its
	// node; none by default (EC2 on AWS takes tens of seconds).
	BootTime time.Duration
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
		case !exists && time.Since(inst.LaunchTime) < a.BootTime:
			// Still booting.
		case !exists:
			do(func() error {
				if err := a.Client.Create(ctx, a.node(inst, facts[inst.Type])); client.IgnoreAlreadyExists(err) != nil {
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

func (a *NodeAgent) node(inst ec2sim.Instance, f catalog.InstanceType) *corev1.Node {
	it, _ := aws.NewInstanceType(f, nil, aws.AllocatableOptions{})
	arch := f.Arch
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: inst.ID,
			Labels: map[string]string{
				corev1.LabelHostname: inst.ID, corev1.LabelInstanceTypeStable: inst.Type, corev1.LabelTopologyZone: inst.Zone,
				corev1.LabelArchStable: arch, corev1.LabelOSStable: "linux", "type": "kwok",
			},
			Annotations: map[string]string{kwokAnnotation: "fake"},
		},
		Spec: corev1.NodeSpec{
			ProviderID: fmt.Sprintf("aws:///%s/%s", inst.Zone, inst.ID),
			Taints:     []corev1.Taint{v1.UnregisteredNoExecuteTaint},
		},
	}
	if it != nil {
		node.Status.Capacity = it.Capacity.List()
		node.Status.Allocatable = it.Allocatable().List()
	}
	return node
}
