// Package catalog holds facts about EC2 instance types — vCPUs, memory,
// architecture, network interfaces, GPUs and on-demand prices — compiled into
// the binary. The EC2 simulator serves them, and the AWS cloud provider falls
// back on the prices when the pricing API is out of reach.
package catalog

import (
	_ "embed"
	"encoding/json"
	"fmt"
)

//go:embed instance-types.json
var raw []byte

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
}

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
}

// Load parses the embedded catalog. Callers keep the result; it is not cached here.
func Load() ([]InstanceType, error) {
	var doc struct {
		InstanceTypes []InstanceType `json:"instanceTypes"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("embedded instance-type catalog: %w", err)
	}
	return doc.InstanceTypes, nil
}
