// Package catalog holds facts about EC2 instance types — vCPUs, memory,
// architecture, network interfaces, GPUs and on-demand prices — compiled into
// the binary. The EC2 simulator serves them, and the AWS cloud provider falls
// back on the prices when the pricing API is out of reach.
package catalog

import (
	"bufio"
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

//go:embed instance-types.json
var raw []byte

// clockAndEncryption holds, per type, two facts EC2 describes and the
// catalog's source lacks: the sustained clock speed and whether the network
// encrypts in transit between instances.
//
//go:embed clock-and-encryption.txt
var clockAndEncryption []byte

// GPU describes an instance type's accelerators.
type GPU struct {
	Name         string `json:"name"`
	Manufacturer string `json:"manufacturer"`
	Count        int64  `json:"count"`
	MemoryMiB    int64  `json:"memoryMiB"`
}

// Accelerator is a type's non-GPU accelerator devices.
type Accelerator struct {
	Name         string `json:"name"`
	Manufacturer string `json:"manufacturer"`
	Count        int64  `json:"count"`
	MemoryMiB    int64  `json:"memoryMiB"`
	// CoresPerDevice and CoreVersion are each Neuron device's NeuronCores
	// and their generation, as EC2 reports them in neuronInfo's coreInfo.
	CoresPerDevice int64 `json:"coresPerDevice,omitempty"`
	CoreVersion    int64 `json:"coreVersion,omitempty"`
}

// neuronCores are the NeuronCores on one device of each Neuron chip, and
// their generation, from AWS's Neuron architecture documentation: an
// Inferentia chip has four NeuronCore-v1, Inferentia2 and Trainium two
// NeuronCore-v2, Trainium2 eight NeuronCore-v3. The catalog's source gives
// the device counts only.
var neuronCores = map[string][2]int64{
	"inferentia":  {4, 1},
	"inferentia2": {2, 2},
	"trainium":    {2, 2},
	"trainium2":   {8, 3},
}

// processorFeatures are what EC2 reports in an instance type's
// processorInfo.supportedFeatures, by family, from AWS's CPU-options
// documentation (the catalog's source lacks them): nested virtualization on
// the 8th-generation Intel types only, AMD SEV-SNP on C6a, M6a and R6a.
var processorFeatures = map[string][]string{
	"c8i": {FeatureNestedVirtualization}, "c8i-flex": {FeatureNestedVirtualization},
	"m8i": {FeatureNestedVirtualization}, "m8i-flex": {FeatureNestedVirtualization},
	"r8i": {FeatureNestedVirtualization}, "r8i-flex": {FeatureNestedVirtualization},
	"c6a": {"amd-sev-snp"}, "m6a": {"amd-sev-snp"}, "r6a": {"amd-sev-snp"},
}

// FeatureNestedVirtualization is the processor feature a type needs for
// cpuOptions.nestedVirtualization: enabled.
const FeatureNestedVirtualization = "nested-virtualization"

// InstanceType is what the catalog knows of one instance type.
type InstanceType struct {
	Name                 string `json:"name"`
	Family               string `json:"family"`
	Category             string `json:"category"`
	Generation           int    `json:"generation"`
	Size                 string `json:"size"`
	VCPU                 int64  `json:"vcpu"`
	MemoryMiB            int64  `json:"memoryMiB"`
	Arch                 string `json:"arch"`
	OS                   string `json:"os"`
	CPUManufacturer      string `json:"cpuManufacturer"`
	Hypervisor           string `json:"hypervisor"`
	NetworkBandwidthMbps int64  `json:"networkBandwidthMbps"`
	EBSBandwidthMbps     int64  `json:"ebsBandwidthMbps"`
	LocalNVMeGiB         int64  `json:"localNVMeGiB"`
	GPU                  *GPU   `json:"gpu"`
	// Accelerator is a device that is not a GPU: AWS's Inferentia and
	// Trainium (Neuron) chips.
	Accelerator      *Accelerator       `json:"accelerator"`
	Burstable        bool               `json:"burstable"`
	OnDemandPriceUSD map[string]float64 `json:"onDemandPriceUSD"`
	MaxENIs          int64              `json:"maxENIs"`
	IPv4PerENI       int64              `json:"ipv4PerENI"`
	Trunking         bool               `json:"trunking"`
	BranchENIs       int64              `json:"branchENIs"`
	BareMetal        bool               `json:"bareMetal"`
	MaxPodsENI       int64              `json:"maxPodsENI"`
	// SupportedFeatures are the processor's optional features (EC2's
	// processorInfo.supportedFeatures).
	SupportedFeatures []string `json:"supportedFeatures,omitempty"`
	// SustainedClockSpeedMHz is the processor's all-core sustained speed
	// (EC2's processorInfo.sustainedClockSpeedInGhz); 0 when EC2 states none.
	SustainedClockSpeedMHz int64 `json:"sustainedClockSpeedMHz,omitempty"`
	// EncryptionInTransit says whether traffic between such instances is
	// encrypted by the Nitro hardware (networkInfo.encryptionInTransitSupported).
	EncryptionInTransit bool `json:"encryptionInTransit,omitempty"`
	// PlacementStrategies are the placement group strategies the type
	// launches into (EC2's placementGroupInfo.supportedStrategies).
	PlacementStrategies []string `json:"placementStrategies,omitempty"`
}

// SupportsPlacement says whether the type launches into a placement group
// of the strategy.
func (t InstanceType) SupportsPlacement(strategy string) bool {
	return slices.Contains(t.PlacementStrategies, strategy)
}

// placementStrategies are the strategies EC2 lets a type use: all three,
// but cluster groups take no burstable, Mac or M7i-flex types (the EC2 User
// Guide's list of cluster placement group restrictions).
func placementStrategies(t InstanceType) []string {
	if t.Burstable || strings.HasPrefix(t.Family, "mac") || t.Family == "m7i-flex" {
		return []string{"partition", "spread"}
	}
	return []string{"cluster", "partition", "spread"}
}

// Supports says whether the type's processor has a feature.
func (t InstanceType) Supports(feature string) bool {
	for _, f := range t.SupportedFeatures {
		if f == feature {
			return true
		}
	}
	return false
}

// Load parses the embedded catalog. Callers keep the result; it is not cached here.
func Load() ([]InstanceType, error) {
	var doc struct {
		InstanceTypes []InstanceType `json:"instanceTypes"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("embedded instance-type catalog: %w", err)
	}
	extra, err := parseClockAndEncryption(clockAndEncryption)
	if err != nil {
		return nil, err
	}
	for i, t := range doc.InstanceTypes {
		if e, ok := extra[t.Name]; ok {
			doc.InstanceTypes[i].SustainedClockSpeedMHz, doc.InstanceTypes[i].EncryptionInTransit = e.mhz, e.encrypted
		}
		if t.SupportedFeatures == nil {
			doc.InstanceTypes[i].SupportedFeatures = processorFeatures[t.Family]
		}
		if t.PlacementStrategies == nil {
			doc.InstanceTypes[i].PlacementStrategies = placementStrategies(t)
		}
		if a := t.Accelerator; a != nil && a.Manufacturer == "aws" && a.CoresPerDevice == 0 {
			c, ok := neuronCores[a.Name]
			if !ok {
				return nil, fmt.Errorf("embedded instance-type catalog: %s: no NeuronCore count known for accelerator %q; add it to neuronCores", t.Name, a.Name)
			}
			a.CoresPerDevice, a.CoreVersion = c[0], c[1]
		}
	}
	return doc.InstanceTypes, nil
}

type clockAndEncryptionFacts struct {
	mhz       int64
	encrypted bool
}

// parseClockAndEncryption reads clock-and-encryption.txt: a line per type,
// "name MHz true|false", MHz "-" where EC2 states none; # starts a comment.
func parseClockAndEncryption(b []byte) (map[string]clockAndEncryptionFacts, error) {
	out := map[string]clockAndEncryptionFacts{}
	lines := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; lines.Scan(); n++ {
		line := strings.TrimSpace(lines.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 3 {
			return nil, fmt.Errorf("embedded clock-and-encryption.txt line %d: want \"name MHz true|false\", got %q", n, line)
		}
		var f clockAndEncryptionFacts
		if fields[1] != "-" {
			mhz, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil || mhz <= 0 {
				return nil, fmt.Errorf("embedded clock-and-encryption.txt line %d: clock speed %q is not a positive number of MHz or -", n, fields[1])
			}
			f.mhz = mhz
		}
		encrypted, err := strconv.ParseBool(fields[2])
		if err != nil {
			return nil, fmt.Errorf("embedded clock-and-encryption.txt line %d: encryption in transit %q is not true or false", n, fields[2])
		}
		f.encrypted = encrypted
		out[fields[0]] = f
	}
	return out, lines.Err()
}
