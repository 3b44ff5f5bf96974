package ec2sim

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"sigs.k8s.io/yaml"
)

// Config shapes the simulated account: where it is, what it has, and what goes
// wrong. A file (YAML or JSON) sets it at start; the admin endpoint changes
// the fault and capacity parts at run time.
type Config struct {
	// Region and Zones of the account; us-east-1 with a, b, c by default.
	Region string   `json:"region,omitempty"`
	Zones  []string `json:"zones,omitempty"`
	// InstanceTypes limits the catalog to these types; all 1,363 when empty.
	InstanceTypes []string `json:"instanceTypes,omitempty"`
	// Subnets, SecurityGroups and Images; one subnet per zone, one security
	// group tagged for ClusterTag, and EKS's current AL2023 images (standard,
	// NVIDIA and Neuron) when empty.
	Subnets        []SubnetConfig        `json:"subnets,omitempty"`
	SecurityGroups []SecurityGroupConfig `json:"securityGroups,omitempty"`
	Images         []ImageConfig         `json:"images,omitempty"`
	// ClusterTag is the karpenter.sh/discovery value the default resources carry.
	ClusterTag string `json:"clusterTag,omitempty"`
	// SpotPriceSeed seeds Spot prices, a stable 25–45% of on-demand per type and zone.
	SpotPriceSeed int64 `json:"spotPriceSeed,omitempty"`

	// InterruptionQueue is the SQS queue EventBridge feeds in this account:
	// it exists from the start, and Spot interruption warnings, rebalance
	// recommendations, scheduled changes and instance state changes are
	// delivered to it. Empty: no queue, events go nowhere.
	InterruptionQueue string `json:"interruptionQueue,omitempty"`
	// SpotNotice is how long after its interruption warning a Spot instance
	// is reclaimed; two minutes, as on AWS, unless set.
	SpotNotice Duration `json:"spotNotice,omitempty"`
	// IAMPropagation is how long a new instance profile, or a role just
	// added to one, takes to reach EC2: IAM is eventually consistent, and
	// until then a launch naming the profile fails with "Invalid IAM
	// Instance Profile name", as on AWS. Five seconds unless set; negative
	// for at once (unit tests that call EC2 right after IAM).
	IAMPropagation Duration `json:"iamPropagation,omitempty"`

	// SSMParameters are parameters of the account besides the public ones
	// AWS publishes for its EKS images (derived from Images), by name.
	SSMParameters map[string]string `json:"ssmParameters,omitempty"`

	// EKS is the cluster EKS DescribeCluster describes; none: every
	// DescribeCluster answers ResourceNotFoundException.
	EKS *EKSCluster `json:"eks,omitempty"`

	// IAMRoles are the account's roles an instance profile may hold;
	// KarpenterNodeRole-<ClusterTag> when empty. InstanceProfiles exist
	// from the start (Backstop makes its own for spec.role).
	IAMRoles         []string                `json:"iamRoles,omitempty"`
	InstanceProfiles []InstanceProfileConfig `json:"instanceProfiles,omitempty"`

	// CapacityReservations are On-Demand Capacity Reservations the account
	// holds from the start (Linux/UNIX, active).
	CapacityReservations []CapacityReservationConfig `json:"capacityReservations,omitempty"`
	// PlacementGroups are placement groups the account holds from the start.
	PlacementGroups []PlacementGroupConfig `json:"placementGroups,omitempty"`

	// Policy is the controller role's IAM policy every request is held to;
	// nil allows everything. PolicyFile, with ${ClusterName}, ${AWS::Region},
	// ${AWS::Partition}, ${AWS::AccountId}, ${NodeRoleName} and
	// ${InterruptionQueueName} filled in from this config, sets it.
	Policy     *Policy `json:"-"`
	PolicyFile string  `json:"policyFile,omitempty"`

	Faults Faults `json:"faults,omitempty"`
}

// EKSCluster is what EKS knows of a cluster.
type EKSCluster struct {
	Name string `json:"name"`
	// Endpoint is the API server's URL.
	Endpoint string `json:"endpoint"`
	// CA is the cluster's certificate authority, PEM.
	CA []byte `json:"ca"`
	// ServiceIPv4CIDR and ServiceIPv6CIDR are the Service CIDRs; IPFamily
	// ipv4 or ipv6.
	ServiceIPv4CIDR string `json:"serviceIPv4CIDR,omitempty"`
	ServiceIPv6CIDR string `json:"serviceIPv6CIDR,omitempty"`
	IPFamily        string `json:"ipFamily,omitempty"`
	Version         string `json:"version,omitempty"`
}

// Faults are the capacity limits and failures the simulator plays back.
type Faults struct {
	// Capacity caps how many instances of a type can run per zone and capacity
	// type; past it, launches fail with InsufficientInstanceCapacity. Rules are
	// checked in order; "" or "*" matches anything.
	Capacity []CapacityRule `json:"capacity,omitempty"`
	// Unfulfillable makes matching launches fail with UnfulfillableCapacity.
	Unfulfillable []CapacityRule `json:"unfulfillable,omitempty"`
	// SpotVCPUQuota caps the vCPUs of running Spot instances
	// (MaxSpotInstanceCountExceeded); nil is unlimited.
	SpotVCPUQuota *int64 `json:"spotVCPUQuota,omitempty"`
	// OnDemandVCPUQuota caps the vCPUs of running on-demand instances (VcpuLimitExceeded).
	OnDemandVCPUQuota *int64 `json:"onDemandVCPUQuota,omitempty"`
	// NoSpotServiceLinkedRole makes Spot launches fail with
	// AuthFailure.ServiceLinkedRoleCreationNotPermitted.
	NoSpotServiceLinkedRole bool `json:"noSpotServiceLinkedRole,omitempty"`
	// ThrottleEvery answers every Nth request with RequestLimitExceeded; 0 never.
	ThrottleEvery int `json:"throttleEvery,omitempty"`
	// ThrottleNext answers the next N requests with RequestLimitExceeded.
	ThrottleNext int `json:"throttleNext,omitempty"`
	// ServerErrorEvery answers every Nth request with a 500 InternalError; 0 never.
	ServerErrorEvery int `json:"serverErrorEvery,omitempty"`
	// LoseFleetAnswers makes the next N CreateFleet calls launch as asked and
	// then answer 500 InternalError, as when the answer is lost after EC2 acted.
	LoseFleetAnswers int `json:"loseFleetAnswers,omitempty"`
	// SQSThrottleNext answers the next N SQS calls with RequestThrottled.
	SQSThrottleNext int `json:"sqsThrottleNext,omitempty"`
	// SSMAccessDenied answers every SSM call with AccessDeniedException, as
	// when the controller's role may not read parameters.
	SSMAccessDenied bool `json:"ssmAccessDenied,omitempty"`
	// SQSAccessDenied answers every SQS call with AccessDenied, as when the
	// controller's role lacks the queue permissions.
	SQSAccessDenied bool `json:"sqsAccessDenied,omitempty"`
	// Latency delays every answer.
	Latency Duration `json:"latency,omitempty"`
}

// CapacityRule matches launches by instance type, zone and capacity type.
type CapacityRule struct {
	InstanceType string `json:"instanceType,omitempty"`
	Zone         string `json:"zone,omitempty"`
	CapacityType string `json:"capacityType,omitempty"`
	// Max running instances the rule allows (for Capacity rules).
	Max int `json:"max,omitempty"`
}

func (r CapacityRule) matches(instanceType, zone, capacityType string) bool {
	m := func(pattern, v string) bool { return pattern == "" || pattern == "*" || pattern == v }
	return m(r.InstanceType, instanceType) && m(r.Zone, zone) && m(r.CapacityType, capacityType)
}

// SubnetConfig is one subnet.
type SubnetConfig struct {
	ID           string            `json:"id"`
	Zone         string            `json:"zone"`
	AvailableIPs int64             `json:"availableIPs,omitempty"`
	Tags         map[string]string `json:"tags,omitempty"`
}

// SecurityGroupConfig is one security group.
type SecurityGroupConfig struct {
	ID   string            `json:"id"`
	Name string            `json:"name"`
	Tags map[string]string `json:"tags,omitempty"`
}

// ImageConfig is one machine image.
type ImageConfig struct {
	ID           string            `json:"id"`
	Name         string            `json:"name"`
	Owner        string            `json:"owner,omitempty"`
	Architecture string            `json:"architecture"`
	CreationDate string            `json:"creationDate,omitempty"`
	Deprecated   bool              `json:"deprecated,omitempty"`
	Tags         map[string]string `json:"tags,omitempty"`
}

// Duration is a time.Duration written as "250ms" in config files.
type Duration struct{ time.Duration }

// UnmarshalJSON reads "250ms".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration must be a string such as \"250ms\": %w", err)
	}
	parsed, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("latency %q: %w", s, err)
	}
	d.Duration = parsed
	return nil
}

// MarshalJSON writes "250ms".
func (d Duration) MarshalJSON() ([]byte, error) { return []byte(`"` + d.String() + `"`), nil }

// LoadConfig reads a YAML or JSON config file; unknown fields are an error.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c := &Config{}
	if err := yaml.UnmarshalStrict(data, c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if c.PolicyFile != "" && !filepath.IsAbs(c.PolicyFile) {
		c.PolicyFile = filepath.Join(filepath.Dir(path), c.PolicyFile)
	}
	return c, nil
}

// PolicyVars are the values a policy's placeholders take in this account.
func (c *Config) PolicyVars() map[string]string {
	c.withDefaults()
	queue := c.InterruptionQueue
	if queue == "" {
		queue = c.EKS.Name
	}
	return map[string]string{"ClusterName": c.EKS.Name, "AWS::Region": c.Region, "AWS::Partition": "aws", "AWS::AccountId": accountID,
		"NodeRoleName": c.IAMRoles[0], "InterruptionQueueName": queue}
}

func (c *Config) withDefaults() {
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if len(c.Zones) == 0 {
		c.Zones = []string{c.Region + "a", c.Region + "b", c.Region + "c"}
	}
	if c.ClusterTag == "" {
		c.ClusterTag = "local"
	}
	if c.SpotNotice.Duration == 0 {
		c.SpotNotice.Duration = 2 * time.Minute
	}
	if c.IAMPropagation.Duration == 0 {
		c.IAMPropagation.Duration = 5 * time.Second
	}
	discovery := map[string]string{"karpenter.sh/discovery": c.ClusterTag}
	if len(c.Subnets) == 0 {
		for i, z := range c.Zones {
			c.Subnets = append(c.Subnets, SubnetConfig{ID: fmt.Sprintf("subnet-%08x", 0x1000+i), Zone: z, AvailableIPs: 4000, Tags: discovery})
		}
	}
	if len(c.SecurityGroups) == 0 {
		c.SecurityGroups = []SecurityGroupConfig{{ID: "sg-00000001", Name: c.ClusterTag + "-node", Tags: discovery}}
	}
	if len(c.Images) == 0 {
		// EKS's AL2023 images: standard for both architectures first (their
		// ids are the ones tests name), then NVIDIA for both and Neuron.
		for i, av := range [][2]string{{"x86_64", "standard"}, {"arm64", "standard"}, {"x86_64", "nvidia"}, {"arm64", "nvidia"}, {"x86_64", "neuron"}} {
			c.Images = append(c.Images, ImageConfig{
				ID: fmt.Sprintf("ami-%08x", 0x2000+i), Name: "amazon-eks-node-al2023-" + av[0] + "-" + av[1] + "-1.36-v20261101",
				Owner: "amazon", Architecture: av[0], CreationDate: "2026-11-01T00:00:00.000Z",
			})
		}
	}
	if len(c.IAMRoles) == 0 {
		c.IAMRoles = []string{"KarpenterNodeRole-" + c.ClusterTag}
	}
	if c.SpotPriceSeed == 0 {
		c.SpotPriceSeed = 42
	}
	if c.EKS == nil {
		// The account's EKS cluster is the one its resources are tagged for.
		c.EKS = &EKSCluster{Name: c.ClusterTag, Endpoint: fmt.Sprintf("https://%X.gr7.%s.eks.amazonaws.com", c.SpotPriceSeed*0x1F2E3D, c.Region),
			CA: []byte(simulatedCA), ServiceIPv4CIDR: "172.20.0.0/16", IPFamily: "ipv4", Version: "1.36"}
	}
}

// simulatedCA is the CA of the default EKS cluster; no node of a local
// cluster trusts it, so a local cluster configures the real one.
const simulatedCA = "-----BEGIN CERTIFICATE-----\nMIIBsimulatedEKSclusterCA\n-----END CERTIFICATE-----\n"

// CapacityReservationConfig is a capacity reservation of the account.
type CapacityReservationConfig struct {
	InstanceType string `json:"instanceType"`
	Zone         string `json:"zone"`
	Count        int    `json:"count"`
	// MatchCriteria is "open" (the default) or "targeted".
	MatchCriteria string            `json:"matchCriteria,omitempty"`
	Tags          map[string]string `json:"tags,omitempty"`
	// EndDate, when set, is when the reservation expires.
	EndDate *time.Time `json:"endDate,omitempty"`
}
