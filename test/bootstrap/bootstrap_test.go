// Package bootstrap_test runs the local cluster (real kube-scheduler and
// kube-controller-manager, KWOK, the EC2 simulator and its EKS cluster) with
// a node agent that boots instances only from their user data, and shows
// that nodes join through what Backstop writes there, and that user data
// which would not bootstrap a node on AWS brings no node up here either:
// the NodeClaim is reported and replaced after the registration TTL.
package bootstrap_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws"
	"github.com/backstop-sh/backstop/test"
	"github.com/backstop-sh/backstop/test/ec2sim"
	"github.com/backstop-sh/backstop/test/local"
)

func TestBootstrap(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Nodes boot from their user data")
}

const otherCA = "-----BEGIN CERTIFICATE-----\nMIIBnotTheClustersCA\n-----END CERTIFICATE-----\n"

var (
	ctx              = context.Background()
	controllerBinary string
)

var _ = BeforeSuite(func() {
	var err error
	controllerBinary, err = test.BuildController(GinkgoT().TempDir())
	Expect(err).NotTo(HaveOccurred())
})

// boot runs a local cluster of the simulated account sim with Backstop's
// extra flags, and applies the suite's EC2NodeClass: images by alias,
// spec.kubelet and spec.userData as given.
func boot(sim ec2sim.Config, alias string, kubelet *awsv1.KubeletConfiguration, userData *string, flags ...string) (*local.Cluster, client.Client) {
	sim.ClusterTag = "boot"
	cluster, err := local.Start(ctx, local.Options{
		Bin: filepath.Join(test.Root, "bin"), Dir: GinkgoT().TempDir(),
		Simulator:        sim,
		ControllerBinary: controllerBinary,
		ControllerFlags:  append([]string{"--batch-idle-duration=500ms"}, flags...),
		Log:              zap.New(zap.WriteTo(GinkgoWriter)),
	})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(cluster.Stop)
	c := cluster.Client
	Expect(c.Create(ctx, &awsv1.EC2NodeClass{ObjectMeta: metav1.ObjectMeta{Name: "default"}, Spec: awsv1.EC2NodeClassSpec{
		Role: "KarpenterNodeRole-boot", AMISelectorTerms: []awsv1.AMISelectorTerm{{Alias: alias}},
		SubnetSelectorTerms:        []awsv1.SubnetSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": "boot"}}},
		SecurityGroupSelectorTerms: []awsv1.SecurityGroupSelectorTerm{{Tags: map[string]string{"karpenter.sh/discovery": "boot"}}},
		Kubelet:                    kubelet, UserData: userData,
	}})).To(Succeed())
	return cluster, c
}

// taintedPool applies a Spot pool of m5.large with a label and a taint, and
// one pod that tolerates the taint, changed by pod if given.
func taintedPool(c client.Client, pod ...func(*corev1.PodSpec)) {
	pool := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "spot"}, Spec: v1.NodePoolSpec{Template: v1.NodeClaimTemplate{
		ObjectMeta: v1.TemplateMetadata{Labels: map[string]string{"team": "data"}},
		Spec: v1.NodeClaimTemplateSpec{
			NodeClassRef: &v1.NodeClassReference{Group: awsv1.Group, Kind: "EC2NodeClass", Name: "default"},
			Taints:       []corev1.Taint{{Key: "dedicated", Value: "data", Effect: corev1.TaintEffectNoSchedule}},
			Requirements: []v1.NodeSelectorRequirementWithMinValues{{Key: corev1.LabelInstanceTypeStable, Operator: v1.OpIn, Values: []string{"m5.large"}}},
		},
	}}}
	Expect(c.Create(ctx, pool)).To(Succeed())
	d := local.Inflate(1)
	d.Spec.Template.Spec.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpExists}}
	for _, change := range pod {
		change(&d.Spec.Template.Spec)
	}
	Expect(c.Create(ctx, d)).To(Succeed())
}

// start runs the AL2023 cluster with the tainted pool and its pod.
func start(kubelet *awsv1.KubeletConfiguration, userData *string, flags ...string) (*local.Cluster, client.Client) {
	cluster, c := boot(ec2sim.Config{}, "al2023@latest", kubelet, userData, append([]string{"--registration-ttl=20s", "--gc-interval=5s"}, flags...)...)
	taintedPool(c)
	return cluster, c
}

// joined waits for the one node, returns it, and waits for the pod to run.
func joined(c client.Client) corev1.Node {
	Eventually(func() []corev1.Node { return nodes(c) }, time.Minute, 250*time.Millisecond).Should(HaveLen(1))
	Eventually(func() string {
		var pods corev1.PodList
		Expect(c.List(ctx, &pods, client.InNamespace("default"))).To(Succeed())
		if len(pods.Items) == 0 {
			return ""
		}
		return string(pods.Items[0].Status.Phase)
	}, time.Minute, time.Second).Should(Equal("Running"))
	// Read once the pod runs: the node as it first appeared is the kubelet's
	// registration, before Backstop adopted it and synced the NodeClaim's labels.
	return nodes(c)[0]
}

func nodes(c client.Client) []corev1.Node {
	var list corev1.NodeList
	Expect(c.List(ctx, &list)).To(Succeed())
	return list.Items
}

func claims(c client.Client) []v1.NodeClaim {
	var list v1.NodeClaimList
	Expect(c.List(ctx, &list)).To(Succeed())
	return list.Items
}

// neverJoins shows the first NodeClaim's instance never registering, the
// NodeClaim reported and deleted after the registration TTL, and another
// NodeClaim made in its place.
func neverJoins(c client.Client) {
	var first v1.NodeClaim
	Eventually(func() string {
		for _, cl := range claims(c) {
			if cl.Status.ProviderID != "" {
				first = cl
				return cl.Status.ProviderID
			}
		}
		return ""
	}, time.Minute, 250*time.Millisecond).ShouldNot(BeEmpty(), "an instance is launched")
	Consistently(func() []corev1.Node { return nodes(c) }, 15*time.Second, time.Second).Should(BeEmpty(), "no node registers")
	Eventually(func() []string {
		var evs eventsv1.EventList
		Expect(c.List(ctx, &evs)).To(Succeed())
		var out []string
		for _, e := range evs.Items {
			if e.Regarding.Name == first.Name {
				out = append(out, e.Reason)
			}
		}
		return out
	}, time.Minute, time.Second).Should(ContainElement("RegistrationTimeout"), "the NodeClaim is reported")
	Eventually(func() []string {
		var names []string
		for _, cl := range claims(c) {
			if cl.Name != first.Name && cl.DeletionTimestamp == nil {
				names = append(names, cl.Name)
			}
		}
		return names
	}, 2*time.Minute, time.Second).ShouldNot(BeEmpty(), "and replaced")
	Expect(nodes(c)).To(BeEmpty())
}

var _ = Describe("a node's user data", func() {
	It("joins the node with the cluster's endpoint and CA, and the pool's labels and taints and the EC2NodeClass's max pods", func() {
		_, c := start(&awsv1.KubeletConfiguration{MaxPods: ptr.To[int32](17)}, nil)
		node := joined(c)
		Expect(node.Labels).To(HaveKeyWithValue("team", "data"))
		Expect(node.Labels).To(HaveKeyWithValue(v1.NodePoolLabelKey, "spot"))
		// Karpenter's well-known instance labels, the two of v1.14 too.
		Expect(node.Labels).To(HaveKey(aws.LabelInstanceFamily))
		Expect(node.Labels).To(HaveKeyWithValue(aws.LabelInstanceTenancy, "default"))
		Expect(node.Labels).To(HaveKeyWithValue(aws.LabelInstanceCapabilityFlex, Or(Equal("true"), Equal("false"))))
		// m5.large, as EC2 describes it: 3.1 GHz sustained, no encryption in transit.
		Expect(node.Labels).To(HaveKeyWithValue(aws.LabelInstanceCPUSustainedClockSpeedMHz, "3100"))
		Expect(node.Labels).To(HaveKeyWithValue(aws.LabelInstanceEncryptionInTransitSupported, "false"))
		Expect(node.Status.Capacity.Pods().Value()).To(Equal(int64(17)), "spec.kubelet.maxPods reached the kubelet")
		Expect(node.Spec.Taints).To(ContainElement(HaveField("Key", "dedicated")))
	})

	It("with a CA that is not the cluster's never joins: the NodeClaim is reported and replaced after the registration TTL", func() {
		_, c := start(nil, nil, "--cluster-ca-bundle="+otherCA)
		neverJoins(c)
	})

	It("with a NodeConfig the kubelet cannot register with never joins, likewise", func() {
		// A label NodeRestriction refuses: the kubelet's Node create is denied.
		broken := strings.Join([]string{"apiVersion: node.eks.aws/v1alpha1", "kind: NodeConfig", "spec:", "  kubelet:", "    flags:",
			"    - --node-labels=node-role.kubernetes.io/worker=true"}, "\n") + "\n"
		_, c := start(nil, &broken)
		neverJoins(c)
	})

	It("boots GPU and Neuron types from EKS's accelerated images, whose device plugins offer the devices and NeuronCores pods ask for", func() {
		cluster, c := boot(ec2sim.Config{}, "al2023@latest", nil, nil)
		Expect(c.Create(ctx, &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "accelerated"}, Spec: v1.NodePoolSpec{Template: v1.NodeClaimTemplate{
			Spec: v1.NodeClaimTemplateSpec{
				NodeClassRef: &v1.NodeClassReference{Group: awsv1.Group, Kind: "EC2NodeClass", Name: "default"},
				Requirements: []v1.NodeSelectorRequirementWithMinValues{
					{Key: corev1.LabelInstanceTypeStable, Operator: v1.OpIn, Values: []string{"m5.large", "g5.xlarge", "inf2.xlarge"}},
					{Key: v1.CapacityTypeLabelKey, Operator: v1.OpIn, Values: []string{"on-demand"}},
				},
			},
		}}})).To(Succeed())
		for name, device := range map[string]corev1.ResourceName{"gpu": "nvidia.com/gpu", "neuron": "aws.amazon.com/neuron", "neuroncore": "aws.amazon.com/neuroncore"} {
			d := local.Inflate(1)
			d.Name = name
			d.Spec.Selector.MatchLabels = map[string]string{"app": name}
			d.Spec.Template.Labels = map[string]string{"app": name}
			n := resource.MustParse("1")
			if name == "neuroncore" {
				n = resource.MustParse("2") // both of an inf2.xlarge's Inferentia2
			}
			d.Spec.Template.Spec.Containers[0].Resources.Requests[device] = n
			d.Spec.Template.Spec.Containers[0].Resources.Limits = corev1.ResourceList{device: n}
			Expect(c.Create(ctx, d)).To(Succeed())
		}
		running := func() map[string]string {
			var pods corev1.PodList
			Expect(c.List(ctx, &pods, client.InNamespace("default"))).To(Succeed())
			out := map[string]string{}
			for _, p := range pods.Items {
				if p.Status.Phase != corev1.PodRunning {
					continue
				}
				var node corev1.Node
				Expect(c.Get(ctx, client.ObjectKey{Name: p.Spec.NodeName}, &node)).To(Succeed())
				out[p.Labels["app"]] = node.Labels[corev1.LabelInstanceTypeStable]
			}
			return out
		}
		Eventually(running, 2*time.Minute, time.Second).Should(Equal(map[string]string{"gpu": "g5.xlarge", "neuron": "inf2.xlarge", "neuroncore": "inf2.xlarge"}))
		images := map[string]string{}
		for _, cl := range claims(c) {
			img, ok := cluster.Sim.Image(cl.Status.ImageID)
			Expect(ok).To(BeTrue())
			images[cl.Labels[corev1.LabelInstanceTypeStable]] = img.Name
		}
		Expect(images).To(Equal(map[string]string{
			"g5.xlarge": "amazon-eks-node-al2023-x86_64-nvidia-1.36-v20261101", "inf2.xlarge": "amazon-eks-node-al2023-x86_64-neuron-1.36-v20261101"}))
	})

	It("joins a Windows node through Start-EKSBootstrap.ps1, as a Windows node of its build, and runs a pod that selects Windows", func() {
		cluster, c := boot(ec2sim.Config{Images: []ec2sim.ImageConfig{
			{ID: "ami-win", Name: "Windows_Server-2022-English-Core-EKS_Optimized-1.36-2026.11.12", Owner: "amazon", Architecture: "x86_64", CreationDate: "2026-11-12T00:00:00.000Z"}}},
			// A soft threshold needs its grace period, or the kubelet refuses to start.
			"windows2022@latest", &awsv1.KubeletConfiguration{MaxPods: ptr.To[int32](19), EvictionSoft: map[string]string{"memory.available": "10%"},
				EvictionSoftGracePeriod: map[string]metav1.Duration{"memory.available": {Duration: time.Minute}}}, nil)
		taintedPool(c, func(pod *corev1.PodSpec) {
			pod.NodeSelector = map[string]string{corev1.LabelOSStable: "windows"}
			// What the VPC resource controller's webhook adds to a Windows pod.
			pod.Containers[0].Resources.Requests[aws.ResourcePrivateIPv4Address] = resource.MustParse("1")
			pod.Containers[0].Resources.Limits = corev1.ResourceList{aws.ResourcePrivateIPv4Address: resource.MustParse("1")}
		})
		node := joined(c)
		Expect(node.Labels).To(HaveKeyWithValue(corev1.LabelOSStable, "windows"))
		Expect(node.Labels).To(HaveKeyWithValue(corev1.LabelWindowsBuild, "10.0.20348"))
		Expect(node.Labels).To(HaveKeyWithValue("team", "data"))
		Expect(node.Spec.Taints).To(ContainElement(HaveField("Key", "dedicated")))
		Expect(node.Status.Capacity.Pods().Value()).To(Equal(int64(19)), "spec.kubelet.maxPods reached the kubelet through -KubeletExtraArgs")
		Expect(cluster.Sim.Instances()[0].UserData).To(HavePrefix("<powershell>"))
	})

	It("joins an AL2 node through /etc/eks/bootstrap.sh, with the pool's labels and taints, and the type's ENI limit of pods when the EC2NodeClass sets no max pods", func() {
		cluster, c := boot(ec2sim.Config{Images: []ec2sim.ImageConfig{
			{ID: "ami-al2", Name: "amazon-eks-node-1.36-v20261101", Owner: "amazon", Architecture: "x86_64", CreationDate: "2026-11-01T00:00:00.000Z"}}},
			"al2@latest", nil, nil)
		taintedPool(c)
		node := joined(c)
		Expect(node.Labels).To(HaveKeyWithValue("team", "data"))
		Expect(node.Spec.Taints).To(ContainElement(HaveField("Key", "dedicated")))
		Expect(node.Status.Capacity.Pods().Value()).To(Equal(int64(29)), "bootstrap.sh's ENI limit for m5.large, as Backstop planned it")
		Expect(cluster.Sim.Instances()[0].UserData).To(ContainSubstring("/etc/eks/bootstrap.sh 'boot'"))
	})

	It("joins a Bottlerocket node through its TOML settings, with the pool's labels and taints and the EC2NodeClass's max pods", func() {
		cluster, c := boot(ec2sim.Config{Images: []ec2sim.ImageConfig{
			{ID: "ami-br", Name: "bottlerocket-aws-k8s-1.36-x86_64-v1.50.0-abcdef12", Owner: "amazon", Architecture: "x86_64", CreationDate: "2026-11-02T00:00:00.000Z"}}},
			"bottlerocket@latest", &awsv1.KubeletConfiguration{MaxPods: ptr.To[int32](23)}, nil)
		taintedPool(c)
		node := joined(c)
		Expect(node.Labels).To(HaveKeyWithValue("team", "data"))
		Expect(node.Status.Capacity.Pods().Value()).To(Equal(int64(23)), "spec.kubelet.maxPods reached the kubelet through settings.kubernetes.max-pods")
		Expect(node.Spec.Taints).To(ContainElement(HaveField("Key", "dedicated")))
		Expect(cluster.Sim.Instances()[0].UserData).To(ContainSubstring("[settings.kubernetes]"), "TOML, not a MIME archive")
	})
})
