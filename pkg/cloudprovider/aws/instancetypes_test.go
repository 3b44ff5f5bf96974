package aws_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws"
	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws/catalog"
)

var _ = Describe("instance types", func() {
	facts := map[string]catalog.InstanceType{}
	BeforeEach(func() {
		all, err := catalog.Load()
		Expect(err).NotTo(HaveOccurred())
		for _, f := range all {
			facts[f.Name] = f
		}
	})

	It("computes m5.large's capacity and allocatable with the EKS reservations", func() {
		it, err := aws.NewInstanceType(facts["m5.large"], nil, aws.AllocatableOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(it.Capacity.CPU).To(Equal(int64(2000)))
		Expect(it.Capacity.Memory).To(Equal(int64(7577)<<20), "8192Mi less 7.5% VM overhead")
		Expect(it.Capacity.Pods).To(Equal(int64(29)), "the ENI limit")
		alloc := it.Allocatable()
		Expect(alloc.CPU).To(Equal(int64(1930)), "6% of the first core and 1% of the second reserved")
		Expect(alloc.Memory).To(Equal(int64(7577-(11*29+255)-100)<<20), "11Mi per pod + 255Mi reserved, 100Mi eviction")
	})

	It("labels instances with Karpenter's well-known keys", func() {
		it, err := aws.NewInstanceType(facts["p4d.24xlarge"], nil, aws.AllocatableOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(it.Requirements.Labels()).To(HaveKeyWithValue(aws.LabelInstanceFamily, "p4d"))
		Expect(it.Requirements.Labels()).To(HaveKeyWithValue(aws.LabelInstanceGPUCount, "8"))
		Expect(it.Requirements.Labels()).To(HaveKeyWithValue(corev1.LabelArchStable, "amd64"))
		Expect(it.Capacity.Extended).To(HaveKeyWithValue(corev1.ResourceName("nvidia.com/gpu"), int64(8)))
		plain, err := aws.NewInstanceType(facts["m5.large"], nil, aws.AllocatableOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(plain.Requirements).NotTo(HaveKey(aws.LabelInstanceGPUCount), "no GPU label without GPUs")
		Expect(plain.Requirements).NotTo(HaveKey(aws.LabelInstanceAcceleratorCount))
		Expect(plain.Requirements.Labels()).To(HaveKeyWithValue(aws.LabelInstanceCapabilityFlex, "false"))
		Expect(plain.Requirements.Labels()).To(HaveKeyWithValue(aws.LabelInstanceTenancy, "default"))
		Expect(plain.Requirements.Labels()).To(HaveKeyWithValue(aws.LabelInstanceCPUSustainedClockSpeedMHz, "3100"))
		Expect(plain.Requirements.Labels()).To(HaveKeyWithValue(aws.LabelInstanceEncryptionInTransitSupported, "false"))
		nitro, err := aws.NewInstanceType(facts["m6i.large"], nil, aws.AllocatableOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(nitro.Requirements.Labels()).To(HaveKeyWithValue(aws.LabelInstanceEncryptionInTransitSupported, "true"))
		old, err := aws.NewInstanceType(facts["t1.micro"], nil, aws.AllocatableOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(old.Requirements).NotTo(HaveKey(aws.LabelInstanceCPUSustainedClockSpeedMHz), "no speed label where EC2 states none, rather than 0")
		flex, err := aws.NewInstanceType(facts["m7i-flex.large"], nil, aws.AllocatableOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(flex.Requirements.Labels()).To(HaveKeyWithValue(aws.LabelInstanceCapabilityFlex, "true"))
	})

	It("shares one requirement among the types that carry the same label", func() {
		large, err := aws.NewInstanceType(facts["m5.large"], nil, aws.AllocatableOptions{})
		Expect(err).NotTo(HaveOccurred())
		xlarge, err := aws.NewInstanceType(facts["m5.xlarge"], nil, aws.AllocatableOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(large.Requirements[aws.LabelInstanceFamily]).To(BeIdenticalTo(xlarge.Requirements[aws.LabelInstanceFamily]), "one m5 family requirement")
		Expect(large.Requirements[corev1.LabelArchStable]).To(BeIdenticalTo(xlarge.Requirements[corev1.LabelArchStable]))
		Expect(large.Requirements[aws.LabelInstanceSize].Values()).To(Equal([]string{"large"}), "each keeps its own values")
		Expect(xlarge.Requirements[aws.LabelInstanceSize].Values()).To(Equal([]string{"xlarge"}))
	})

	It("labels Neuron types with their accelerators and offers their devices as aws.amazon.com/neuron, their NeuronCores as aws.amazon.com/neuroncore", func() {
		it, err := aws.NewInstanceType(facts["inf2.48xlarge"], nil, aws.AllocatableOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(it.Requirements.Labels()).To(And(HaveKeyWithValue(aws.LabelInstanceAcceleratorName, "inferentia2"),
			HaveKeyWithValue(aws.LabelInstanceAcceleratorManufacturer, "aws"), HaveKeyWithValue(aws.LabelInstanceAcceleratorCount, "12")))
		Expect(it.Requirements).NotTo(HaveKey(aws.LabelInstanceGPUCount), "a Neuron device is not a GPU")
		Expect(it.Capacity.Extended).To(Equal(map[corev1.ResourceName]int64{aws.ResourceNeuron: 12, aws.ResourceNeuronCore: 24}),
			"twelve Inferentia2 devices of two NeuronCores each")
		trn2, err := aws.NewInstanceType(facts["trn2.48xlarge"], nil, aws.AllocatableOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(trn2.Capacity.Extended).To(Equal(map[corev1.ResourceName]int64{aws.ResourceNeuron: 16, aws.ResourceNeuronCore: 128}),
			"sixteen Trainium2 devices of eight")
	})

	It("honours the EC2NodeClass kubelet settings", func() {
		it, err := aws.NewInstanceType(facts["m5.large"], nil, aws.AllocatableOptions{Kubelet: &awsv1.KubeletConfiguration{
			MaxPods: ptr.To[int32](110), PodsPerCore: ptr.To[int32](20),
			KubeReserved: map[string]string{"cpu": "100m", "memory": "500Mi"},
			EvictionHard: map[string]string{"memory.available": "5%"},
		}})
		Expect(err).NotTo(HaveOccurred())
		Expect(it.Capacity.Pods).To(Equal(int64(40)), "podsPerCore 20 × 2 vCPU caps maxPods 110")
		Expect(it.Allocatable().CPU).To(Equal(int64(1900)))
		capacity := int64(7577 << 20)
		Expect(it.Allocatable().Memory).To(Equal(capacity - 500<<20 - capacity*5/100))
	})

	It("names the field of a kubelet value it cannot read", func() {
		_, err := aws.NewInstanceType(facts["m5.large"], nil, aws.AllocatableOptions{Kubelet: &awsv1.KubeletConfiguration{
			SystemReserved: map[string]string{"memory": "lots"},
		}})
		Expect(err).To(MatchError(ContainSubstring(`kubelet.systemReserved[memory]="lots" is not a quantity`)))
	})
})
