package v1

// NodeSelectorOperator is the operator of a requirement.
// +kubebuilder:validation:Enum=In;NotIn;Exists;DoesNotExist;Gt;Lt;Gte;Lte
type NodeSelectorOperator string

// Requirement operators. Gte and Lte extend Kubernetes' node selector operators.
const (
	OpIn           NodeSelectorOperator = "In"
	OpNotIn        NodeSelectorOperator = "NotIn"
	OpExists       NodeSelectorOperator = "Exists"
	OpDoesNotExist NodeSelectorOperator = "DoesNotExist"
	OpGt           NodeSelectorOperator = "Gt"
	OpLt           NodeSelectorOperator = "Lt"
	OpGte          NodeSelectorOperator = "Gte"
	OpLte          NodeSelectorOperator = "Lte"
)

// NodeSelectorRequirementWithMinValues constrains one node label, optionally asking
// for at least minValues distinct values among a NodeClaim's options.
// +kubebuilder:validation:XValidation:rule="self.operator != 'In' || (has(self.values) && size(self.values) > 0)",messageExpression="'requirement ' + self.key + ': operator In needs at least one entry in values'"
// +kubebuilder:validation:XValidation:rule="!(self.operator in ['Gt', 'Lt', 'Gte', 'Lte']) || (has(self.values) && size(self.values) == 1 && self.values[0].matches('^[0-9]+$'))",messageExpression="'requirement ' + self.key + ': operator ' + self.operator + ' needs exactly one non-negative integer in values'"
// +kubebuilder:validation:XValidation:rule="!(self.operator in ['Exists', 'DoesNotExist']) || !has(self.values) || size(self.values) == 0",messageExpression="'requirement ' + self.key + ': operator ' + self.operator + ' takes no values; remove values'"
// +kubebuilder:validation:XValidation:rule="!has(self.minValues) || self.operator != 'In' || (has(self.values) && self.minValues <= size(self.values))",messageExpression="'requirement ' + self.key + ': minValues cannot exceed the number of values listed for operator In'"
// +kubebuilder:validation:XValidation:rule="self.key != 'kubernetes.io/hostname'",message="requirement key 'kubernetes.io/hostname' is restricted: a NodePool cannot choose node hostnames"
// +kubebuilder:validation:XValidation:rule="self.key == 'karpenter.sh/capacity-type' || !self.key.contains('/') || !self.key.split('/')[0].endsWith('karpenter.sh')",messageExpression="'requirement key ' + self.key + ' is restricted: of the karpenter.sh domain only karpenter.sh/capacity-type may be required'"
// +kubebuilder:validation:XValidation:rule="!self.key.contains('/') || !self.key.split('/')[0].endsWith('karpenter.k8s.aws') || self.key in ['karpenter.k8s.aws/instance-tenancy', 'karpenter.k8s.aws/capacity-reservation-type', 'karpenter.k8s.aws/capacity-reservation-id', 'karpenter.k8s.aws/capacity-reservation-interruptible', 'karpenter.k8s.aws/ec2nodeclass', 'karpenter.k8s.aws/instance-encryption-in-transit-supported', 'karpenter.k8s.aws/instance-category', 'karpenter.k8s.aws/instance-hypervisor', 'karpenter.k8s.aws/instance-family', 'karpenter.k8s.aws/instance-generation', 'karpenter.k8s.aws/instance-local-nvme', 'karpenter.k8s.aws/instance-size', 'karpenter.k8s.aws/instance-cpu', 'karpenter.k8s.aws/instance-cpu-manufacturer', 'karpenter.k8s.aws/instance-cpu-sustained-clock-speed-mhz', 'karpenter.k8s.aws/instance-memory', 'karpenter.k8s.aws/instance-ebs-bandwidth', 'karpenter.k8s.aws/instance-network-bandwidth', 'karpenter.k8s.aws/instance-gpu-name', 'karpenter.k8s.aws/instance-gpu-manufacturer', 'karpenter.k8s.aws/instance-gpu-count', 'karpenter.k8s.aws/instance-gpu-memory', 'karpenter.k8s.aws/instance-accelerator-name', 'karpenter.k8s.aws/instance-accelerator-manufacturer', 'karpenter.k8s.aws/instance-accelerator-count', 'karpenter.k8s.aws/instance-capability-flex', 'karpenter.k8s.aws/placement-group-id', 'karpenter.k8s.aws/placement-group-partition']",messageExpression="'requirement key ' + self.key + ' is restricted: the karpenter.k8s.aws domain holds only the well-known labels Backstop and Karpenter set (instance-family, instance-cpu, capacity-reservation-id, ...); check the spelling'"
type NodeSelectorRequirementWithMinValues struct {
	// Key is the label key the requirement constrains.
	// +kubebuilder:validation:MaxLength=316
	// +kubebuilder:validation:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`
	// +required
	Key string `json:"key"`
	// Operator relates the key to the values.
	// +required
	Operator NodeSelectorOperator `json:"operator"`
	// Values are the label values; one integer for Gt, Lt, Gte and Lte, none for Exists and DoesNotExist.
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MaxLength=63
	// +listType=atomic
	// +optional
	Values []string `json:"values,omitempty"`
	// MinValues is the least number of distinct values of the key that a NodeClaim's
	// instance-type options must span, for flexibility across Spot pools.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=50
	// +optional
	MinValues *int `json:"minValues,omitempty"`
}
