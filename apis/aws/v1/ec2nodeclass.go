package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// EC2NodeClass says how to launch an EC2 instance: network, image, role, storage,
// metadata service and kubelet settings. NodePools point at it by name.
// +kubebuilder:object:root=true
// +kubebuilder:resource:path=ec2nodeclasses,scope=Cluster,categories=karpenter,shortName={ec2nc,ec2ncs}
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Ready",type="string",JSONPath=".status.conditions[?(@.type==\"Ready\")].status"
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"
// +kubebuilder:printcolumn:name="Role",type="string",JSONPath=".spec.role",priority=1
type EC2NodeClass struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec EC2NodeClassSpec `json:"spec"`
	// +optional
	Status EC2NodeClassStatus `json:"status,omitempty"`
}

// EC2NodeClassSpec is the launch configuration of a class of nodes.
// +kubebuilder:validation:XValidation:rule="has(self.role) != has(self.instanceProfile)",message="set exactly one of 'role' or 'instanceProfile'"
// +kubebuilder:validation:XValidation:rule="self.amiSelectorTerms.exists(t, has(t.alias)) || has(self.amiFamily)",message="amiFamily is required when amiSelectorTerms has no alias term: set amiFamily, or select the image with an alias such as al2023@latest"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.role) || has(self.role)",message="changing from 'role' to 'instanceProfile' is not supported; create a new EC2NodeClass"
// +kubebuilder:validation:XValidation:rule="has(oldSelf.role) || !has(self.role)",message="changing from 'instanceProfile' to 'role' is not supported; create a new EC2NodeClass"
type EC2NodeClassSpec struct {
	// SubnetSelectorTerms select the subnets instances launch into; terms are ORed.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=30
	// +kubebuilder:validation:XValidation:rule="self.all(t, has(t.tags) || has(t.id))",message="subnetSelectorTerms: each term needs one of 'tags' or 'id'"
	// +kubebuilder:validation:XValidation:rule="!self.exists(t, has(t.id) && has(t.tags))",message="subnetSelectorTerms: 'id' cannot be combined with other fields in the same term; use a separate term"
	// +required
	SubnetSelectorTerms []SubnetSelectorTerm `json:"subnetSelectorTerms"`
	// SecurityGroupSelectorTerms select the security groups; terms are ORed.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=30
	// +kubebuilder:validation:XValidation:rule="self.all(t, has(t.tags) || has(t.id) || has(t.name))",message="securityGroupSelectorTerms: each term needs one of 'tags', 'id' or 'name'"
	// +kubebuilder:validation:XValidation:rule="!self.exists(t, has(t.id) && (has(t.tags) || has(t.name)))",message="securityGroupSelectorTerms: 'id' cannot be combined with other fields in the same term; use a separate term"
	// +required
	SecurityGroupSelectorTerms []SecurityGroupSelectorTerm `json:"securityGroupSelectorTerms"`
	// AMISelectorTerms select the image; terms are ORed and the newest match wins.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=30
	// +kubebuilder:validation:XValidation:rule="self.all(t, has(t.tags) || has(t.id) || has(t.name) || has(t.alias) || has(t.ssmParameter))",message="amiSelectorTerms: each term needs one of 'alias', 'tags', 'id', 'name' or 'ssmParameter'"
	// +kubebuilder:validation:XValidation:rule="!self.exists(t, has(t.alias) && (has(t.tags) || has(t.id) || has(t.name) || has(t.owner) || has(t.ssmParameter)))",message="amiSelectorTerms: 'alias' cannot be combined with other fields in the same term"
	// +kubebuilder:validation:XValidation:rule="!self.exists(t, has(t.alias)) || size(self) == 1",message="amiSelectorTerms: an 'alias' term must be the only term"
	// +kubebuilder:validation:XValidation:rule="!self.exists(t, has(t.id) && (has(t.tags) || has(t.name) || has(t.owner)))",message="amiSelectorTerms: 'id' cannot be combined with other fields in the same term; use a separate term"
	// +required
	AMISelectorTerms []AMISelectorTerm `json:"amiSelectorTerms"`
	// AMIFamily picks the bootstrap format of user data; implied by an alias term.
	// +kubebuilder:validation:Enum=AL2;AL2023;Bottlerocket;Custom;Windows2019;Windows2022;Windows2025
	// +optional
	AMIFamily *string `json:"amiFamily,omitempty"`
	// UserData is merged into the bootstrap user data of the AMI family.
	// +optional
	UserData *string `json:"userData,omitempty"`
	// Role is the IAM role name of the node; Backstop makes an instance profile for it.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Role string `json:"role,omitempty"`
	// InstanceProfile is an existing instance profile to use instead of Role.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +optional
	InstanceProfile *string `json:"instanceProfile,omitempty"`
	// Tags are put on every instance, volume and launch template; the keys Backstop
	// uses to find its own resources are rejected.
	// +kubebuilder:validation:MaxProperties=40
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.size() <= 128 && self[k].size() <= 256)",message="tags: keys are at most 128 characters and values at most 256"
	// +kubebuilder:validation:XValidation:rule="self.all(k, k != '')",message="tags: empty tag keys are not supported"
	// +kubebuilder:validation:XValidation:rule="self.all(k, !k.startsWith('kubernetes.io/cluster'))",message="tag key 'kubernetes.io/cluster/*' is restricted: Backstop sets it to mark the cluster's instances"
	// +kubebuilder:validation:XValidation:rule="self.all(k, k != 'karpenter.sh/nodepool')",message="tag key 'karpenter.sh/nodepool' is restricted: Backstop sets it to the NodePool's name"
	// +kubebuilder:validation:XValidation:rule="self.all(k, k != 'karpenter.sh/nodeclaim')",message="tag key 'karpenter.sh/nodeclaim' is restricted: Backstop sets it to the NodeClaim's name"
	// +kubebuilder:validation:XValidation:rule="self.all(k, k != 'karpenter.k8s.aws/ec2nodeclass')",message="tag key 'karpenter.k8s.aws/ec2nodeclass' is restricted: Backstop sets it to the EC2NodeClass's name"
	// +kubebuilder:validation:XValidation:rule="self.all(k, k != 'eks:eks-cluster-name')",message="tag key 'eks:eks-cluster-name' is restricted: Backstop sets it to the cluster's name"
	// +optional
	Tags map[string]string `json:"tags,omitempty"`
	// Kubelet settings passed to the node's bootstrap.
	// +optional
	Kubelet *KubeletConfiguration `json:"kubelet,omitempty"`
	// BlockDeviceMappings are the instance's volumes; at most one is the root volume.
	// +kubebuilder:validation:MaxItems=50
	// +kubebuilder:validation:XValidation:rule="self.filter(m, has(m.rootVolume) && m.rootVolume).size() <= 1",message="blockDeviceMappings: at most one mapping may set rootVolume"
	// +optional
	BlockDeviceMappings []BlockDeviceMapping `json:"blockDeviceMappings,omitempty"`
	// InstanceStorePolicy says what to do with local NVMe instance storage.
	// +kubebuilder:validation:Enum=RAID0
	// +optional
	InstanceStorePolicy *string `json:"instanceStorePolicy,omitempty"`
	// DetailedMonitoring turns on one-minute CloudWatch metrics for the instance.
	// +optional
	DetailedMonitoring *bool `json:"detailedMonitoring,omitempty"`
	// AssociatePublicIPAddress overrides the subnet's public-IP setting.
	// +optional
	AssociatePublicIPAddress *bool `json:"associatePublicIPAddress,omitempty"`
	// MetadataOptions configure the instance metadata service; IMDSv2 with a hop
	// limit of 1 by default, so pods cannot reach the node's credentials.
	// +kubebuilder:default={httpEndpoint: enabled, httpProtocolIPv6: disabled, httpPutResponseHopLimit: 1, httpTokens: required}
	// +optional
	MetadataOptions *MetadataOptions `json:"metadataOptions,omitempty"`
	// Context is the reserved capacity or license context passed to EC2 fleet.
	// +optional
	Context *string `json:"context,omitempty"`
	// IPPrefixCount is the number of /28 IPv4 prefixes given to the primary
	// network interface at launch (prefix delegation); types whose interface
	// cannot hold that many are not offered.
	// +kubebuilder:validation:Minimum=0
	// +optional
	IPPrefixCount *int32 `json:"ipPrefixCount,omitempty"`
	// ConnectionTracking sets idle timeouts of connection tracking on the
	// primary network interface (Nitro instances only).
	// +optional
	ConnectionTracking *ConnectionTracking `json:"connectionTracking,omitempty"`
	// CPUOptions are the instance's CPU options.
	// +optional
	CPUOptions *CPUOptions `json:"cpuOptions,omitempty"`
	// CapacityReservationSelectorTerms select On-Demand Capacity Reservations to
	// launch into; terms are ORed. The active ones found are listed in
	// status.capacityReservations, and NodePools that allow the capacity type
	// "reserved" launch into them before Spot and On-Demand. Capacity Blocks
	// and interruptible reservations are listed but not launched into.
	// +kubebuilder:validation:MaxItems=30
	// +kubebuilder:validation:XValidation:rule="self.all(t, has(t.tags) || has(t.id) || has(t.instanceMatchCriteria))",message="capacityReservationSelectorTerms: each term needs one of 'tags', 'id' or 'instanceMatchCriteria'"
	// +kubebuilder:validation:XValidation:rule="!self.exists(t, has(t.id) && (has(t.tags) || has(t.ownerID) || has(t.instanceMatchCriteria)))",message="capacityReservationSelectorTerms: 'id' cannot be combined with other fields in the same term; use a separate term"
	// +optional
	CapacityReservationSelectorTerms []CapacityReservationSelectorTerm `json:"capacityReservationSelectorTerms,omitempty"`
	// PlacementGroupSelector names the placement group every instance of the
	// class launches into (by name or id); status.placementGroup is what it
	// resolved to. A group EC2 does not know makes the class not Ready.
	// +kubebuilder:validation:XValidation:rule="has(self.name) != has(self.id)",message="placementGroupSelector: set exactly one of 'name' or 'id'"
	// +optional
	PlacementGroupSelector *PlacementGroupSelector `json:"placementGroupSelector,omitempty"`
	// NetworkInterfaces lay out the instance's network interfaces (EFA).
	// Accepted so Karpenter manifests apply; Backstop launches with one
	// primary interface only, and a class that sets these is not Ready.
	// +kubebuilder:validation:MaxItems=150
	// +kubebuilder:validation:XValidation:rule="size(self) == 0 || self.exists(n, n.networkCardIndex == 0 && n.deviceIndex == 0 && n.interfaceType == 'interface')",message="networkInterfaces: one interface must be the primary: networkCardIndex 0, deviceIndex 0, interfaceType 'interface'"
	// +kubebuilder:validation:XValidation:rule="self.all(n, self.filter(m, m.networkCardIndex == n.networkCardIndex && m.deviceIndex == n.deviceIndex).size() == 1)",message="networkInterfaces: each (networkCardIndex, deviceIndex) pair may appear once"
	// +kubebuilder:validation:XValidation:rule="self.all(n, n.interfaceType != 'efa-only' || self.filter(m, m.networkCardIndex == n.networkCardIndex && m.interfaceType == 'efa-only').size() == 1)",message="networkInterfaces: a network card has at most one 'efa-only' interface"
	// +optional
	NetworkInterfaces []NetworkInterface `json:"networkInterfaces,omitempty"`
}

// ConnectionTracking are idle timeouts, in seconds, of the security group's
// connection tracking, as EC2 takes them.
// +kubebuilder:validation:XValidation:rule="has(self.tcpEstablishedTimeout) || has(self.udpStreamTimeout) || has(self.udpTimeout)",message="connectionTracking: set at least one of tcpEstablishedTimeout, udpStreamTimeout or udpTimeout"
type ConnectionTracking struct {
	// TCPEstablishedTimeout for idle established TCP connections: 60 to 432000 (5 days).
	// +kubebuilder:validation:Minimum=60
	// +kubebuilder:validation:Maximum=432000
	// +optional
	TCPEstablishedTimeout *int32 `json:"tcpEstablishedTimeout,omitempty"`
	// UDPStreamTimeout for idle UDP flows seen in both directions more than once: 60 to 180.
	// +kubebuilder:validation:Minimum=60
	// +kubebuilder:validation:Maximum=180
	// +optional
	UDPStreamTimeout *int32 `json:"udpStreamTimeout,omitempty"`
	// UDPTimeout for other idle UDP flows: 30 to 60.
	// +kubebuilder:validation:Minimum=30
	// +kubebuilder:validation:Maximum=60
	// +optional
	UDPTimeout *int32 `json:"udpTimeout,omitempty"`
}

// CPUOptions are an instance's CPU options.
type CPUOptions struct {
	// NestedVirtualization "enabled" lets the instance run its own hypervisor;
	// only types whose processor reports nested-virtualization are offered.
	// +kubebuilder:validation:Enum=enabled;disabled
	// +optional
	NestedVirtualization *string `json:"nestedVirtualization,omitempty"`
}

// CapacityReservationSelectorTerm selects capacity reservations by tags
// (and owner), by id, or by how instances match them.
type CapacityReservationSelectorTerm struct {
	// Tags that must all match; a value of "*" matches any value.
	// +kubebuilder:validation:MaxProperties=20
	// +kubebuilder:validation:XValidation:rule="self.all(k, k != '' && self[k] != '')",message="tags: empty tag keys or values are not supported"
	// +optional
	Tags map[string]string `json:"tags,omitempty"`
	// ID is a capacity reservation id.
	// +kubebuilder:validation:Pattern=`^cr-[0-9a-z]+$`
	// +optional
	ID string `json:"id,omitempty"`
	// OwnerID is the account that owns the reservation.
	// +kubebuilder:validation:Pattern=`^[0-9]{12}$`
	// +optional
	OwnerID string `json:"ownerID,omitempty"`
	// InstanceMatchCriteria is "open" or "targeted".
	// +kubebuilder:validation:Enum=open;targeted
	// +optional
	InstanceMatchCriteria string `json:"instanceMatchCriteria,omitempty"`
}

// PlacementGroupSelector names a placement group by name or id.
type PlacementGroupSelector struct {
	// Name of the placement group.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +optional
	Name *string `json:"name,omitempty"`
	// ID of the placement group.
	// +kubebuilder:validation:Pattern=`^pg-[0-9a-z]+$`
	// +optional
	ID *string `json:"id,omitempty"`
}

// NetworkInterface is one network interface of the instance.
type NetworkInterface struct {
	// NetworkCardIndex is the network card the interface is on.
	// +kubebuilder:validation:Minimum=0
	// +required
	NetworkCardIndex int32 `json:"networkCardIndex"`
	// DeviceIndex is the interface's index on its card.
	// +kubebuilder:validation:Minimum=0
	// +required
	DeviceIndex int32 `json:"deviceIndex"`
	// InterfaceType is "interface" (an ENA interface) or "efa-only".
	// +kubebuilder:validation:Enum=interface;efa-only
	// +required
	InterfaceType string `json:"interfaceType"`
}

// SubnetSelectorTerm selects subnets by tags or by id.
type SubnetSelectorTerm struct {
	// Tags that must all match; a value of "*" matches any value.
	// +kubebuilder:validation:MaxProperties=20
	// +kubebuilder:validation:XValidation:rule="self.all(k, k != '' && self[k] != '')",message="tags: empty tag keys or values are not supported"
	// +optional
	Tags map[string]string `json:"tags,omitempty"`
	// ID is a subnet id.
	// +kubebuilder:validation:Pattern=`^subnet-[0-9a-z]+$`
	// +kubebuilder:validation:MaxLength=64
	// +optional
	ID string `json:"id,omitempty"`
}

// SecurityGroupSelectorTerm selects security groups by tags, id or name.
type SecurityGroupSelectorTerm struct {
	// Tags that must all match; a value of "*" matches any value.
	// +kubebuilder:validation:MaxProperties=20
	// +kubebuilder:validation:XValidation:rule="self.all(k, k != '' && self[k] != '')",message="tags: empty tag keys or values are not supported"
	// +optional
	Tags map[string]string `json:"tags,omitempty"`
	// ID is a security group id.
	// +kubebuilder:validation:Pattern=`^sg-[0-9a-z]+$`
	// +kubebuilder:validation:MaxLength=64
	// +optional
	ID string `json:"id,omitempty"`
	// Name is a security group name.
	// +kubebuilder:validation:MaxLength=255
	// +optional
	Name string `json:"name,omitempty"`
}

// AMISelectorTerm selects images by alias, tags, id, name, owner or SSM parameter.
type AMISelectorTerm struct {
	// Alias is family@version, such as al2023@latest or bottlerocket@v1.20.0.
	// +kubebuilder:validation:MaxLength=30
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-zA-Z0-9]+@.+$')",message="alias must be of the form family@version, such as al2023@latest"
	// +kubebuilder:validation:XValidation:rule="self.split('@')[0] in ['al2', 'al2023', 'bottlerocket', 'windows2019', 'windows2022', 'windows2025']",message="alias family must be one of al2, al2023, bottlerocket, windows2019, windows2022 or windows2025"
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('windows') || self.endsWith('@latest')",message="windows aliases support only the version 'latest'"
	// +optional
	Alias string `json:"alias,omitempty"`
	// Tags that must all match; a value of "*" matches any value.
	// +kubebuilder:validation:MaxProperties=20
	// +kubebuilder:validation:XValidation:rule="self.all(k, k != '' && self[k] != '')",message="tags: empty tag keys or values are not supported"
	// +optional
	Tags map[string]string `json:"tags,omitempty"`
	// ID is an image id.
	// +kubebuilder:validation:Pattern=`^ami-[0-9a-z]+$`
	// +kubebuilder:validation:MaxLength=64
	// +optional
	ID string `json:"id,omitempty"`
	// Name is an image name; "*" wildcards are allowed.
	// +kubebuilder:validation:MaxLength=128
	// +optional
	Name string `json:"name,omitempty"`
	// Owner is an account id or alias (self, amazon) that owns the image.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Owner string `json:"owner,omitempty"`
	// SSMParameter names a parameter that holds an image id.
	// +kubebuilder:validation:MaxLength=2048
	// +optional
	SSMParameter string `json:"ssmParameter,omitempty"`
}

// KubeletConfiguration holds the kubelet settings Backstop passes at bootstrap and
// accounts for when it computes a node's allocatable resources.
// +kubebuilder:validation:XValidation:rule="!has(self.imageGCHighThresholdPercent) || !has(self.imageGCLowThresholdPercent) || self.imageGCHighThresholdPercent > self.imageGCLowThresholdPercent",message="imageGCHighThresholdPercent must be greater than imageGCLowThresholdPercent"
type KubeletConfiguration struct {
	// ClusterDNS are the IPs of the cluster's DNS servers.
	// +kubebuilder:validation:MaxItems=10
	// +optional
	ClusterDNS []string `json:"clusterDNS,omitempty"`
	// MaxPods caps the pods on a node; by default it follows the instance's ENI limits.
	// +kubebuilder:validation:Minimum=0
	// +optional
	MaxPods *int32 `json:"maxPods,omitempty"`
	// PodsPerCore caps pods per vCPU; the lower of this and MaxPods applies.
	// +kubebuilder:validation:Minimum=0
	// +optional
	PodsPerCore *int32 `json:"podsPerCore,omitempty"`
	// SystemReserved is reserved for system daemons.
	// +kubebuilder:validation:XValidation:rule="self.all(k, k in ['cpu', 'memory', 'ephemeral-storage', 'pid'])",message="systemReserved: keys must be one of cpu, memory, ephemeral-storage or pid"
	// +optional
	SystemReserved map[string]string `json:"systemReserved,omitempty"`
	// KubeReserved is reserved for Kubernetes daemons.
	// +kubebuilder:validation:XValidation:rule="self.all(k, k in ['cpu', 'memory', 'ephemeral-storage', 'pid'])",message="kubeReserved: keys must be one of cpu, memory, ephemeral-storage or pid"
	// +optional
	KubeReserved map[string]string `json:"kubeReserved,omitempty"`
	// EvictionHard are hard eviction thresholds by signal.
	// +kubebuilder:validation:XValidation:rule="self.all(k, k in ['memory.available', 'nodefs.available', 'nodefs.inodesFree', 'imagefs.available', 'imagefs.inodesFree', 'pid.available'])",message="evictionHard: keys must be eviction signals such as memory.available or nodefs.available"
	// +optional
	EvictionHard map[string]string `json:"evictionHard,omitempty"`
	// EvictionSoft are soft eviction thresholds by signal.
	// +kubebuilder:validation:XValidation:rule="self.all(k, k in ['memory.available', 'nodefs.available', 'nodefs.inodesFree', 'imagefs.available', 'imagefs.inodesFree', 'pid.available'])",message="evictionSoft: keys must be eviction signals such as memory.available or nodefs.available"
	// +optional
	EvictionSoft map[string]string `json:"evictionSoft,omitempty"`
	// EvictionSoftGracePeriod is the grace period of each soft eviction signal.
	// +optional
	EvictionSoftGracePeriod map[string]metav1.Duration `json:"evictionSoftGracePeriod,omitempty"`
	// EvictionMaxPodGracePeriod caps pod grace periods during soft eviction, in seconds.
	// +optional
	EvictionMaxPodGracePeriod *int32 `json:"evictionMaxPodGracePeriod,omitempty"`
	// ImageGCHighThresholdPercent is the disk usage that starts image garbage collection.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	ImageGCHighThresholdPercent *int32 `json:"imageGCHighThresholdPercent,omitempty"`
	// ImageGCLowThresholdPercent is the disk usage image garbage collection frees down to.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	ImageGCLowThresholdPercent *int32 `json:"imageGCLowThresholdPercent,omitempty"`
	// CPUCFSQuota turns on CPU CFS quota enforcement for limits.
	// +optional
	CPUCFSQuota *bool `json:"cpuCFSQuota,omitempty"`
}

// BlockDeviceMapping is one volume of the instance.
type BlockDeviceMapping struct {
	// DeviceName is the device, such as /dev/xvda.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	DeviceName *string `json:"deviceName,omitempty"`
	// EBS describes the volume.
	// +optional
	EBS *BlockDevice `json:"ebs,omitempty"`
	// RootVolume marks the volume the image boots from.
	// +optional
	RootVolume bool `json:"rootVolume,omitempty"`
}

// BlockDevice is an EBS volume.
// +kubebuilder:validation:XValidation:rule="has(self.snapshotID) || has(self.volumeSize)",message="ebs: set volumeSize, or snapshotID to size the volume from a snapshot"
// +kubebuilder:validation:XValidation:rule="!has(self.volumeInitializationRate) || (has(self.snapshotID) && size(self.snapshotID) > 0)",message="ebs: volumeInitializationRate needs snapshotID: it is the rate at which the snapshot's blocks fill the volume"
type BlockDevice struct {
	// DeleteOnTermination deletes the volume with the instance.
	// +optional
	DeleteOnTermination *bool `json:"deleteOnTermination,omitempty"`
	// Encrypted encrypts the volume.
	// +optional
	Encrypted *bool `json:"encrypted,omitempty"`
	// IOPS for io1, io2 and gp3 volumes.
	// +optional
	IOPS *int64 `json:"iops,omitempty"`
	// KMSKeyID is the key that encrypts the volume.
	// +optional
	KMSKeyID *string `json:"kmsKeyID,omitempty"`
	// SnapshotID the volume is created from.
	// +optional
	SnapshotID *string `json:"snapshotID,omitempty"`
	// Throughput in MiB/s for gp3 volumes.
	// +optional
	Throughput *int64 `json:"throughput,omitempty"`
	// VolumeSize such as 20Gi.
	// +kubebuilder:validation:Pattern=`^[1-9][0-9]{0,4}(Gi|G|Ti|T)$`
	// +optional
	VolumeSize *string `json:"volumeSize,omitempty"`
	// VolumeType is the EBS volume type.
	// +kubebuilder:validation:Enum=standard;io1;io2;gp2;sc1;st1;gp3
	// +optional
	VolumeType *string `json:"volumeType,omitempty"`
	// VolumeInitializationRate is the rate, in MiB/s (100 to 300), at which a
	// volume made from snapshotID is filled (EBS Provisioned Rate for Volume
	// Initialization).
	// +kubebuilder:validation:Minimum=100
	// +kubebuilder:validation:Maximum=300
	// +optional
	VolumeInitializationRate *int32 `json:"volumeInitializationRate,omitempty"`
}

// MetadataOptions configure the instance metadata service.
type MetadataOptions struct {
	// HTTPEndpoint turns the metadata service on or off.
	// +kubebuilder:default=enabled
	// +kubebuilder:validation:Enum=enabled;disabled
	// +optional
	HTTPEndpoint *string `json:"httpEndpoint,omitempty"`
	// HTTPProtocolIPv6 turns on the IPv6 endpoint.
	// +kubebuilder:default=disabled
	// +kubebuilder:validation:Enum=enabled;disabled
	// +optional
	HTTPProtocolIPv6 *string `json:"httpProtocolIPv6,omitempty"`
	// HTTPPutResponseHopLimit is the hop limit of metadata responses; 1 keeps pods out.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=64
	// +optional
	HTTPPutResponseHopLimit *int64 `json:"httpPutResponseHopLimit,omitempty"`
	// HTTPTokens is "required" for IMDSv2 only, or "optional".
	// +kubebuilder:default=required
	// +kubebuilder:validation:Enum=required;optional
	// +optional
	HTTPTokens *string `json:"httpTokens,omitempty"`
}

// EC2NodeClass condition types.
const (
	ConditionSubnetsReady         = "SubnetsReady"
	ConditionSecurityGroupsReady  = "SecurityGroupsReady"
	ConditionAMIsReady            = "AMIsReady"
	ConditionInstanceProfileReady = "InstanceProfileReady"
	// ConditionCapacityReservationsReady is True once the class's
	// capacity reservation terms were looked up (matching none is fine).
	ConditionCapacityReservationsReady = "CapacityReservationsReady"
	// ConditionPlacementGroupReady is True when the class names no
	// placement group or the one it names was found (Karpenter's name).
	ConditionPlacementGroupReady = "PlacementGroupReady"
	// ConditionValidationSucceeded is false while the spec asks for what
	// Backstop does not do (Karpenter's name for the class's own checks).
	ConditionValidationSucceeded = "ValidationSucceeded"
	ConditionReady               = "Ready"
	// ConditionAMIsDeprecated is True while an image in status.amis is
	// deprecated: it still launches, but AWS no longer updates it. It is a
	// warning and does not make the class not Ready.
	ConditionAMIsDeprecated = "AMIsDeprecated"
)

// EC2NodeClassStatus is what the selector terms resolved to.
type EC2NodeClassStatus struct {
	// Subnets matched by subnetSelectorTerms.
	// +optional
	Subnets []Subnet `json:"subnets,omitempty"`
	// SecurityGroups matched by securityGroupSelectorTerms.
	// +optional
	SecurityGroups []SecurityGroup `json:"securityGroups,omitempty"`
	// AMIs matched by amiSelectorTerms, with the requirements each one serves.
	// +optional
	AMIs []AMI `json:"amis,omitempty"`
	// InstanceProfile is the profile instances launch with.
	// +optional
	InstanceProfile string `json:"instanceProfile,omitempty"`
	// CapacityReservations are the active capacity reservations
	// capacityReservationSelectorTerms matched.
	// +optional
	CapacityReservations []CapacityReservation `json:"capacityReservations,omitempty"`
	// PlacementGroup is the group placementGroupSelector resolved to.
	// +optional
	PlacementGroup *PlacementGroup `json:"placementGroup,omitempty"`
	// Conditions say whether each part resolved; Ready when all did.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Placement group strategies, as EC2 names them.
const (
	PlacementStrategyCluster   = "cluster"
	PlacementStrategyPartition = "partition"
	PlacementStrategySpread    = "spread"
)

// PlacementGroup is a resolved placement group.
type PlacementGroup struct {
	// ID of the group (pg-…), the value of the
	// karpenter.k8s.aws/placement-group-id label.
	ID string `json:"id"`
	// Name of the group.
	Name string `json:"name"`
	// Strategy: cluster (one zone, close together), partition (racks
	// apart per partition) or spread (each instance on its own rack, at
	// most seven per zone).
	// +kubebuilder:validation:Enum=cluster;partition;spread
	Strategy string `json:"strategy"`
	// PartitionCount of a partition group.
	// +optional
	PartitionCount int32 `json:"partitionCount,omitempty"`
	// SpreadLevel of a spread group: rack or host.
	// +optional
	SpreadLevel string `json:"spreadLevel,omitempty"`
	// Zone a cluster group lives in: that of its running instances, once
	// it has some. Only that zone is offered for the class then.
	// +optional
	Zone string `json:"zone,omitempty"`
}

// CapacityReservation is a resolved capacity reservation, with Karpenter's fields.
type CapacityReservation struct {
	// AvailabilityZone the reservation holds capacity in.
	AvailabilityZone string `json:"availabilityZone"`
	// EndTime is when the reservation ends, if it has an end.
	// +optional
	EndTime *metav1.Time `json:"endTime,omitempty"`
	// ID of the reservation.
	// +kubebuilder:validation:Pattern=`^cr-[0-9a-z]+$`
	ID string `json:"id"`
	// InstanceMatchCriteria is "open" or "targeted".
	// +kubebuilder:validation:Enum=open;targeted
	InstanceMatchCriteria string `json:"instanceMatchCriteria"`
	// InstanceType the reservation holds.
	InstanceType string `json:"instanceType"`
	// OwnerID is the account that owns the reservation.
	// +kubebuilder:validation:Pattern=`^[0-9]{12}$`
	OwnerID string `json:"ownerID"`
	// ReservationType is "default" (an On-Demand Capacity Reservation) or
	// "capacity-block".
	// +kubebuilder:validation:Enum=default;capacity-block
	// +kubebuilder:default=default
	// +optional
	ReservationType string `json:"reservationType"`
	// Interruptible says the reservation's owner may take the capacity back.
	// +optional
	Interruptible bool `json:"interruptible"`
	// State is "active", or "expiring" for a Capacity Block near its end.
	// +kubebuilder:validation:Enum=active;expiring
	// +kubebuilder:default=active
	// +optional
	State string `json:"state"`
}

// Capacity reservation types and states, as EC2NodeClass status writes them.
const (
	CapacityReservationTypeDefault       = "default"
	CapacityReservationTypeCapacityBlock = "capacity-block"
	CapacityReservationStateActive       = "active"
	CapacityReservationStateExpiring     = "expiring"
)

// Subnet is a resolved subnet.
type Subnet struct {
	// ID of the subnet.
	ID string `json:"id"`
	// Zone of the subnet.
	Zone string `json:"zone"`
	// ZoneID of the subnet.
	// +optional
	ZoneID string `json:"zoneID,omitempty"`
}

// SecurityGroup is a resolved security group.
type SecurityGroup struct {
	// ID of the security group.
	ID string `json:"id"`
	// Name of the security group.
	// +optional
	Name string `json:"name,omitempty"`
}

// AMI is a resolved image.
type AMI struct {
	// ID of the image.
	ID string `json:"id"`
	// Name of the image.
	// +optional
	Name string `json:"name,omitempty"`
	// Deprecated says the image is deprecated.
	// +optional
	Deprecated bool `json:"deprecated,omitempty"`
	// Requirements a node must meet to use this image, such as its architecture.
	// +optional
	Requirements []AMIRequirement `json:"requirements,omitempty"`
}

// AMIRequirement is a node label requirement an image serves.
type AMIRequirement struct {
	// Key is the label key.
	Key string `json:"key"`
	// Operator relates the key to the values.
	Operator string `json:"operator"`
	// Values of the key.
	// +optional
	Values []string `json:"values,omitempty"`
}

// EC2NodeClassList is a list of EC2NodeClasses.
// +kubebuilder:object:root=true
type EC2NodeClassList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []EC2NodeClass `json:"items"`
}
