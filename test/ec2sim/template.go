package ec2sim

import (
	"fmt"
	"strconv"

	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws/catalog"
)

// LaunchOptions are the launch-template settings an instance was launched
// with beyond image, user data and groups: what tests check arrived.
type LaunchOptions struct {
	// NestedVirtualization is CpuOptions.NestedVirtualization.
	NestedVirtualization string `json:"nestedVirtualization,omitempty"`
	// IPv4Prefixes is the primary interface's Ipv4PrefixCount.
	IPv4Prefixes int `json:"ipv4Prefixes,omitempty"`
	// ConnectionTracking are the primary interface's idle timeouts, in
	// seconds, by EC2's field name (TcpEstablishedTimeout, ...).
	ConnectionTracking map[string]int `json:"connectionTracking,omitempty"`
	// VolumeInitializationRates are the block devices' rates, MiB/s, by device name.
	VolumeInitializationRates map[string]int `json:"volumeInitializationRates,omitempty"`
}

// connectionTrackingLimits are EC2's bounds on each idle timeout, seconds.
var connectionTrackingLimits = map[string][2]int{
	"TcpEstablishedTimeout": {60, 432000},
	"UdpStreamTimeout":      {60, 180},
	"UdpTimeout":            {30, 60},
}

// launchOptions reads and checks a CreateLaunchTemplate request's CPU
// options, primary network interface and EBS settings as EC2 does: a value
// out of range fails the request.
func launchOptions(data *params) (LaunchOptions, *apiError) {
	var o LaunchOptions
	switch v := data.get("CpuOptions.NestedVirtualization"); v {
	case "", "enabled", "disabled":
		o.NestedVirtualization = v
	default:
		return o, invalidParameter("Value (%s) for parameter cpuOptions.nestedVirtualization is invalid. Valid values: enabled, disabled", v)
	}
	for _, ni := range data.list("NetworkInterface") {
		if ni.get("DeviceIndex") != "0" {
			continue
		}
		if v := ni.get("Ipv4PrefixCount"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return o, invalidParameter("Value (%s) for parameter networkInterface.ipv4PrefixCount is invalid", v)
			}
			o.IPv4Prefixes = n
		}
		ct := ni.sub("ConnectionTrackingSpecification")
		for field, limits := range connectionTrackingLimits {
			v := ct.get(field)
			if v == "" {
				continue
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < limits[0] || n > limits[1] {
				return o, invalidParameter("Value (%s) for parameter connectionTrackingSpecification.%s is invalid. It must be between %d and %d seconds", v, field, limits[0], limits[1])
			}
			if o.ConnectionTracking == nil {
				o.ConnectionTracking = map[string]int{}
			}
			o.ConnectionTracking[field] = n
		}
	}
	for _, bd := range data.list("BlockDeviceMapping") {
		v := bd.get("Ebs.VolumeInitializationRate")
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 100 || n > 300 {
			return o, invalidParameter("Value (%s) for parameter volumeInitializationRate is invalid. It must be between 100 and 300 MiB/s", v)
		}
		if bd.get("Ebs.SnapshotId") == "" {
			return o, &apiError{status: 400, code: "InvalidParameterCombination", message: "volumeInitializationRate can be specified only when creating a volume from a snapshot"}
		}
		if o.VolumeInitializationRates == nil {
			o.VolumeInitializationRates = map[string]int{}
		}
		o.VolumeInitializationRates[bd.get("DeviceName")] = n
	}
	return o, nil
}

// typeError says why a template's settings cannot launch an instance type,
// as EC2 refuses that override: nested virtualization on a processor
// without it, more prefixes than the interface has address slots.
func typeError(o LaunchOptions, t catalog.InstanceType) (string, string) {
	if o.NestedVirtualization == "enabled" && !t.Supports(catalog.FeatureNestedVirtualization) {
		return "Unsupported", fmt.Sprintf("Nested virtualization is not supported for instance type %s.", t.Name)
	}
	// Each prefix takes one of the interface's address slots, and the
	// primary address one more.
	if o.IPv4Prefixes > 0 && int64(o.IPv4Prefixes)+1 > t.IPv4PerENI {
		return "InvalidParameterValue", fmt.Sprintf("The number of IPv4 prefixes (%d) exceeds the limit for instance type %s (%d per network interface, one of them the primary address).",
			o.IPv4Prefixes, t.Name, t.IPv4PerENI-1)
	}
	return "", ""
}
