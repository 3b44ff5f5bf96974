// Package aws is Backstop's AWS cloud provider: instance types and offerings,
// EC2NodeClass resolution and the fleet launcher, on aws-sdk-go-v2.
package aws

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws/catalog"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

// Well-known instance labels, the same keys Karpenter uses so NodePool
// requirements and node selectors written for it keep working.
const (
	LabelInstanceCategory        = awsv1.Group + "/instance-category"
	LabelInstanceFamily          = awsv1.Group + "/instance-family"
	LabelInstanceGeneration      = awsv1.Group + "/instance-generation"
	LabelInstanceSize            = awsv1.Group + "/instance-size"
	LabelInstanceCPU             = awsv1.Group + "/instance-cpu"
	LabelInstanceCPUManufacturer = awsv1.Group + "/instance-cpu-manufacturer"
	// LabelTopologyZoneID names a node's zone by its id, the same zone in
	// every account (use1-az1), as the zone name is not.
	LabelTopologyZoneID = "topology.k8s.aws/zone-id"
	// LabelInstanceCPUSustainedClockSpeedMHz is the all-core sustained
	// speed in MHz, left out where EC2 states none.
	LabelInstanceCPUSustainedClockSpeedMHz = awsv1.Group + "/instance-cpu-sustained-clock-speed-mhz"
	// LabelInstanceEncryptionInTransitSupported is "true" on types whose
	// traffic to each other is encrypted by the Nitro hardware.
	LabelInstanceEncryptionInTransitSupported = awsv1.Group + "/instance-encryption-in-transit-supported"
	LabelInstanceMemory                       = awsv1.Group + "/instance-memory"
	LabelInstanceHypervisor                   = awsv1.Group + "/instance-hypervisor"
	LabelInstanceNetworkBandwidth             = awsv1.Group + "/instance-network-bandwidth"
	LabelInstanceEBSBandwidth                 = awsv1.Group + "/instance-ebs-bandwidth"
	LabelInstanceLocalNVMe                    = awsv1.Group + "/instance-local-nvme"
	LabelInstanceGPUName                      = awsv1.Group + "/instance-gpu-name"
	LabelInstanceGPUManufacturer              = awsv1.Group + "/instance-gpu-manufacturer"
	LabelInstanceGPUCount                     = awsv1.Group + "/instance-gpu-count"
	LabelInstanceGPUMemory                    = awsv1.Group + "/instance-gpu-memory"

	// LabelInstanceCapabilityFlex is "true" on the flex types (c7i-flex,
	// m7i-flex, ...), "false" on the rest.
	LabelInstanceCapabilityFlex = awsv1.Group + "/instance-capability-flex"
	// LabelInstanceTenancy is the tenancy instances launch with: always
	// "default" (Backstop does not launch Dedicated Instances).
	LabelInstanceTenancy = awsv1.Group + "/instance-tenancy"

	LabelInstanceAcceleratorName         = awsv1.Group + "/instance-accelerator-name"
	LabelInstanceAcceleratorManufacturer = awsv1.Group + "/instance-accelerator-manufacturer"
	LabelInstanceAcceleratorCount        = awsv1.Group + "/instance-accelerator-count"
)

// ResourceNeuron and ResourceNeuronCore are the extended resources the
// Neuron device plugin registers: one per Inferentia or Trainium device, and
// one per NeuronCore on them.
const (
	ResourceNeuron     corev1.ResourceName = "aws.amazon.com/neuron"
	ResourceNeuronCore corev1.ResourceName = "aws.amazon.com/neuroncore"
)

// DefaultVMMemoryOverheadPercent is the share of an instance's memory the
// hypervisor and firmware keep; the kubelet never sees it.
const DefaultVMMemoryOverheadPercent = 7.5

// rootVolume is the default root volume that ephemeral storage comes from.
var rootVolume = resource.MustParse("20Gi")

// AllocatableOptions tune how capacity and reservations are computed.
type AllocatableOptions struct {
	VMMemoryOverheadPercent float64
	// Kubelet settings from the EC2NodeClass; nil for defaults.
	Kubelet *awsv1.KubeletConfiguration
	// WindowsBuild is the Windows Server build the class's nodes run
	// (WindowsBuilds), "" for Linux families.
	WindowsBuild string `json:",omitempty"`
	// PlacementGroupID is the placement group the class's instances launch
	// into: each type carries it as the karpenter.k8s.aws/placement-group-id
	// label, so pods and NodePools can select it.
	PlacementGroupID string `json:",omitempty"`
	// PlacementGroupPartitions is the partition count of a partition
	// group: each type may land in any of them, so it carries
	// karpenter.k8s.aws/placement-group-partition In [1..count], and a pod
	// can select one or spread over them.
	PlacementGroupPartitions int32 `json:",omitempty"`
}

// WindowsBuilds are the Windows Server builds of the Windows families, as
// the node reports them in node.kubernetes.io/windows-build.
var WindowsBuilds = map[string]string{
	"windows2019": "10.0.17763",
	"windows2022": "10.0.20348",
	"windows2025": "10.0.26100",
}

// ResourcePrivateIPv4Address is what the VPC resource controller's webhook
// makes each Windows pod request: one of its node's secondary addresses.
const ResourcePrivateIPv4Address corev1.ResourceName = "vpc.amazonaws.com/PrivateIPv4Address"

// gpuResources maps GPU manufacturers to the extended resource their device plugin registers.
var gpuResources = map[string]corev1.ResourceName{
	"nvidia": "nvidia.com/gpu",
	"amd":    "amd.com/gpu",
	"aws":    "aws.amazon.com/neuron",
	"habana": "habana.ai/gaudi",
}

// labelRequirements holds one requirement for each label and value an
// instance type carries. Requirements are never changed once built, so the
// types that share a label (an architecture, a category, a size, a memory
// size...) share its requirement: the catalog's 1,363 types carry 18,340
// labels, 1,958 of them distinct, and all of them converted hold 0.6 MB of
// heap instead of 1.9 MB (heap after collection, 2026-11-22). Bounded by the
// distinct labels of the types EC2 describes.
var labelRequirements sync.Map

type label struct{ key, value string }

func labelRequirement(key, value string) *scheduling.Requirement {
	if r, ok := labelRequirements.Load(label{key, value}); ok {
		return r.(*scheduling.Requirement)
	}
	r, _ := labelRequirements.LoadOrStore(label{key, value}, scheduling.MustRequirement(key, v1.OpIn, value))
	return r.(*scheduling.Requirement)
}

// NewInstanceType turns catalog facts and offerings into the scheduler's view:
// labels for requirements, capacity, and the overhead that makes allocatable.
func NewInstanceType(f catalog.InstanceType, offerings []scheduling.Offering, opts AllocatableOptions) (*scheduling.InstanceType, error) {
	it := &scheduling.InstanceType{Name: f.Name, Offerings: offerings, Requirements: scheduling.Requirements{}}
	if opts.WindowsBuild != "" {
		// A Windows node reports windows as its OS, and its build.
		f.OS = string(corev1.Windows)
	}
	labels := map[string]string{
		corev1.LabelInstanceTypeStable:            f.Name,
		corev1.LabelArchStable:                    f.Arch,
		corev1.LabelOSStable:                      f.OS,
		LabelInstanceCategory:                     f.Category,
		LabelInstanceFamily:                       f.Family,
		LabelInstanceGeneration:                   strconv.Itoa(f.Generation),
		LabelInstanceSize:                         f.Size,
		LabelInstanceCPU:                          strconv.FormatInt(f.VCPU, 10),
		LabelInstanceCPUManufacturer:              f.CPUManufacturer,
		LabelInstanceMemory:                       strconv.FormatInt(f.MemoryMiB, 10),
		LabelInstanceHypervisor:                   f.Hypervisor,
		LabelInstanceCapabilityFlex:               strconv.FormatBool(strings.HasSuffix(f.Family, "-flex")),
		LabelInstanceTenancy:                      "default",
		LabelInstanceEncryptionInTransitSupported: strconv.FormatBool(f.EncryptionInTransit),
	}
	if f.SustainedClockSpeedMHz > 0 {
		labels[LabelInstanceCPUSustainedClockSpeedMHz] = strconv.FormatInt(f.SustainedClockSpeedMHz, 10)
	}
	// Bandwidths EC2 does not state are left out rather than labelled 0.
	if f.NetworkBandwidthMbps > 0 {
		labels[LabelInstanceNetworkBandwidth] = strconv.FormatInt(f.NetworkBandwidthMbps, 10)
	}
	if f.EBSBandwidthMbps > 0 {
		labels[LabelInstanceEBSBandwidth] = strconv.FormatInt(f.EBSBandwidthMbps, 10)
	}
	if f.LocalNVMeGiB > 0 {
		labels[LabelInstanceLocalNVMe] = strconv.FormatInt(f.LocalNVMeGiB, 10)
	}
	if opts.WindowsBuild != "" {
		labels[corev1.LabelWindowsBuild] = opts.WindowsBuild
	}
	if opts.PlacementGroupID != "" {
		labels[LabelPlacementGroupID] = opts.PlacementGroupID
	}
	if f.GPU != nil {
		labels[LabelInstanceGPUName] = f.GPU.Name
		labels[LabelInstanceGPUManufacturer] = f.GPU.Manufacturer
		labels[LabelInstanceGPUCount] = strconv.FormatInt(f.GPU.Count, 10)
		labels[LabelInstanceGPUMemory] = strconv.FormatInt(f.GPU.MemoryMiB, 10)
	}
	if a := f.Accelerator; a != nil {
		labels[LabelInstanceAcceleratorName] = a.Name
		labels[LabelInstanceAcceleratorManufacturer] = a.Manufacturer
		labels[LabelInstanceAcceleratorCount] = strconv.FormatInt(a.Count, 10)
	}
	for k, v := range labels {
		if v == "" {
			continue
		}
		it.Requirements.Add(labelRequirement(k, v))
	}
	if n := opts.PlacementGroupPartitions; n > 0 {
		partitions := make([]string, 0, n)
		for p := int32(1); p <= n; p++ {
			partitions = append(partitions, strconv.Itoa(int(p)))
		}
		it.Requirements.Add(scheduling.MustRequirement(LabelPlacementGroupPartition, v1.OpIn, partitions...))
	}

	overheadPct := opts.VMMemoryOverheadPercent
	if overheadPct == 0 {
		overheadPct = DefaultVMMemoryOverheadPercent
	}
	memMiB := int64(math.Floor(float64(f.MemoryMiB) * (1 - overheadPct/100)))
	pods := maxPods(f, opts.Kubelet)
	it.Capacity = scheduling.Resources{
		CPU: f.VCPU * 1000, Memory: memMiB << 20, Pods: pods, Storage: rootVolume.Value(),
	}
	if f.GPU != nil {
		if name, ok := gpuResources[f.GPU.Manufacturer]; ok {
			it.Capacity.Extended = map[corev1.ResourceName]int64{name: f.GPU.Count}
		}
	}
	if opts.WindowsBuild != "" && f.IPv4PerENI > 1 {
		// Windows pods take their addresses from the primary interface's
		// secondary ones, which the VPC resource controller advertises.
		if it.Capacity.Extended == nil {
			it.Capacity.Extended = map[corev1.ResourceName]int64{}
		}
		it.Capacity.Extended[ResourcePrivateIPv4Address] = f.IPv4PerENI - 1
	}
	if a := f.Accelerator; a != nil && a.Manufacturer == "aws" {
		if it.Capacity.Extended == nil {
			it.Capacity.Extended = map[corev1.ResourceName]int64{}
		}
		it.Capacity.Extended[ResourceNeuron] = a.Count
		if a.CoresPerDevice > 0 {
			it.Capacity.Extended[ResourceNeuronCore] = a.Count * a.CoresPerDevice
		}
	}
	overhead, err := reserved(f, pods, it.Capacity, opts.Kubelet)
	if err != nil {
		return nil, fmt.Errorf("instance type %s: %w", f.Name, err)
	}
	it.Overhead = overhead
	return it, nil
}

// maxPods is the ENI limit, or the kubelet's maxPods, capped by podsPerCore.
func maxPods(f catalog.InstanceType, k *awsv1.KubeletConfiguration) int64 {
	pods := f.MaxPodsENI
	if k != nil && k.MaxPods != nil {
		pods = int64(*k.MaxPods)
	}
	if k != nil && k.PodsPerCore != nil && *k.PodsPerCore > 0 {
		pods = min(pods, int64(*k.PodsPerCore)*f.VCPU)
	}
	return pods
}

// reserved is kube-reserved + system-reserved + the hard eviction threshold.
// Defaults follow the EKS-optimized AMIs: CPU 6% of the first core, 1% of the
// second, 0.5% of the third and fourth, 0.25% of the rest; memory 11Mi per pod
// plus 255Mi; eviction at 100Mi of memory and 10% of the root volume.
func reserved(f catalog.InstanceType, pods int64, capacity scheduling.Resources, k *awsv1.KubeletConfiguration) (scheduling.Resources, error) {
	cores := float64(f.VCPU)
	cpu := 60.0
	if cores > 1 {
		cpu += 10
	}
	cpu += 5 * math.Min(math.Max(cores-2, 0), 2)
	cpu += 2.5 * math.Max(cores-4, 0)
	kube := scheduling.Resources{CPU: int64(math.Ceil(cpu)), Memory: (11*pods + 255) << 20, Storage: 1 << 30}
	var system scheduling.Resources
	eviction := scheduling.Resources{Memory: 100 << 20, Storage: capacity.Storage / 10}
	if k != nil {
		var err error
		if kube, err = override(kube, k.KubeReserved, "kubeReserved"); err != nil {
			return scheduling.Resources{}, err
		}
		if system, err = override(system, k.SystemReserved, "systemReserved"); err != nil {
			return scheduling.Resources{}, err
		}
		if eviction, err = evictionOverride(eviction, k.EvictionHard, capacity); err != nil {
			return scheduling.Resources{}, err
		}
	}
	return kube.Add(system).Add(eviction), nil
}

func override(r scheduling.Resources, values map[string]string, field string) (scheduling.Resources, error) {
	for name, v := range values {
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return r, fmt.Errorf("kubelet.%s[%s]=%q is not a quantity: %w", field, name, v, err)
		}
		// pid is reserved too, but no pod requests it.
		if name != "pid" {
			r.Set(corev1.ResourceName(name), q)
		}
	}
	return r, nil
}

func evictionOverride(r scheduling.Resources, values map[string]string, capacity scheduling.Resources) (scheduling.Resources, error) {
	for signal, v := range values {
		var total int64
		switch signal {
		case "memory.available":
			total = capacity.Memory
		case "nodefs.available":
			total = capacity.Storage
		default:
			continue
		}
		var amount int64
		if pct, ok := strings.CutSuffix(v, "%"); ok {
			p, err := strconv.ParseFloat(pct, 64)
			if err != nil {
				return r, fmt.Errorf("kubelet.evictionHard[%s]=%q is not a percentage: %w", signal, v, err)
			}
			amount = int64(float64(total) * p / 100)
		} else {
			q, err := resource.ParseQuantity(v)
			if err != nil {
				return r, fmt.Errorf("kubelet.evictionHard[%s]=%q is not a quantity: %w", signal, v, err)
			}
			amount = q.Value()
		}
		if signal == "memory.available" {
			r.Memory = amount
		} else {
			r.Storage = amount
		}
	}
	return r, nil
}
