package v1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// NodePool describes a family of nodes Backstop may create: what they may be,
// how many, and when they may be taken away.
// +kubebuilder:object:root=true
// +kubebuilder:resource:path=nodepools,scope=Cluster,categories=karpenter,shortName={np,nps}
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="NodeClass",type="string",JSONPath=".spec.template.spec.nodeClassRef.name"
// +kubebuilder:printcolumn:name="Nodes",type="integer",JSONPath=".status.nodes"
// +kubebuilder:printcolumn:name="Ready",type="string",JSONPath=".status.conditions[?(@.type==\"Ready\")].status"
// +kubebuilder:printcolumn:name="Age",type="date",JSONPath=".metadata.creationTimestamp"
// +kubebuilder:printcolumn:name="Weight",type="integer",JSONPath=".spec.weight",priority=1
// +kubebuilder:printcolumn:name="CPU",type="string",JSONPath=".status.resources.cpu",priority=1
// +kubebuilder:printcolumn:name="Memory",type="string",JSONPath=".status.resources.memory",priority=1
type NodePool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec NodePoolSpec `json:"spec"`
	// +optional
	Status NodePoolStatus `json:"status,omitempty"`
}

// StaticNotForPods is why the provisioner plans no new NodeClaim of a
// static NodePool for pending pods (they may land on its nodes).
const StaticNotForPods = "a static NodePool (spec.replicas) keeps its count of nodes and is not scaled for pending pods"

// Static says whether the pool asks for a fixed number of nodes (replicas):
// the static controller keeps that many NodeClaims whatever the pods, the
// provisioner plans none of its NodeClaims for pods, and consolidation
// neither removes its nodes nor moves pods onto new ones of it.
func (p *NodePool) Static() bool { return p.Spec.Replicas != nil }

// NodePool condition types beside Ready, as Karpenter's.
const (
	// ConditionNodeClassReady mirrors whether the pool's NodeClass can be
	// launched from.
	ConditionNodeClassReady = "NodeClassReady"
	// ConditionValidationSucceeded says the pool passed the checks the API
	// server's validation cannot make.
	ConditionValidationSucceeded = "ValidationSucceeded"
	// ConditionNodeRegistrationHealthy is False when at least two of the
	// pool's last four NodeClaims failed to launch or their nodes did not
	// register, True once one registered, Unknown since the pool or its
	// NodeClass last changed.
	ConditionNodeRegistrationHealthy = "NodeRegistrationHealthy"
)

// NodePoolSpec is the desired shape of a NodePool.
// +kubebuilder:validation:XValidation:rule="has(self.replicas) == has(oldSelf.replicas)",message="replicas cannot be set or unset on an existing NodePool (static and pod-driven pools do not convert); create a new NodePool"
// +kubebuilder:validation:XValidation:rule="!has(self.replicas) || !has(self.limits) || size(self.limits) == 0 || (size(self.limits) == 1 && 'nodes' in self.limits)",message="a NodePool with replicas takes limits.nodes only; remove the other limits"
// +kubebuilder:validation:XValidation:rule="!has(self.replicas) || !has(self.weight)",message="a NodePool with replicas takes no weight; remove weight"
type NodePoolSpec struct {
	// Template is stamped onto every NodeClaim the NodePool creates.
	// +required
	Template NodeClaimTemplate `json:"template"`
	// Disruption says when nodes of this pool may be removed or replaced.
	// +kubebuilder:default={consolidateAfter: "0s"}
	// +optional
	Disruption Disruption `json:"disruption"`
	// Limits cap the total resources of the pool's nodes; a NodeClaim that would
	// exceed them is not created.
	// +optional
	Limits corev1.ResourceList `json:"limits,omitempty"`
	// Weight orders NodePools: the scheduler tries higher weights first (ties by name).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	Weight *int32 `json:"weight,omitempty"`
	// Replicas asks for a fixed number of nodes whatever the pods (Karpenter's
	// static capacity, alpha there). Accepted so Karpenter manifests apply;
	// Backstop does not keep static pools yet: a NodePool that sets it is not
	// Ready and nothing is launched for it.
	// +kubebuilder:validation:Minimum=0
	// +optional
	Replicas *int64 `json:"replicas,omitempty"`
}

// NodeClaimTemplate is the part of a NodePool copied into its NodeClaims.
type NodeClaimTemplate struct {
	// +optional
	ObjectMeta TemplateMetadata `json:"metadata,omitempty"`
	// +required
	Spec NodeClaimTemplateSpec `json:"spec"`
}

// TemplateMetadata is the metadata put on a NodePool's nodes.
type TemplateMetadata struct {
	// Labels are added to every node; keys in the karpenter.sh domain and
	// kubernetes.io/hostname are Backstop's own and are rejected.
	// +kubebuilder:validation:MaxProperties=100
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.size() <= 316 && self[k].size() <= 63)",message="labels: keys are at most 316 characters and values at most 63"
	// +kubebuilder:validation:XValidation:rule="self.all(k, k != 'karpenter.sh/nodepool')",message="label 'karpenter.sh/nodepool' is restricted: Backstop sets it to the NodePool's name"
	// +kubebuilder:validation:XValidation:rule="self.all(k, k != 'kubernetes.io/hostname')",message="label 'kubernetes.io/hostname' is restricted: the node's hostname is set by the node itself"
	// +kubebuilder:validation:XValidation:rule="self.all(k, !k.contains('/') || !k.split('/')[0].endsWith('karpenter.sh'))",messageExpression="'label ' + self.filter(k, k.contains('/') && k.split('/')[0].endsWith('karpenter.sh'))[0] + ' is restricted: the karpenter.sh domain is reserved for labels Backstop sets'"
	// +kubebuilder:validation:XValidation:rule="self.all(k, !k.contains('/') || !k.split('/')[0].endsWith('karpenter.k8s.aws') || k in ['karpenter.k8s.aws/instance-tenancy', 'karpenter.k8s.aws/capacity-reservation-type', 'karpenter.k8s.aws/capacity-reservation-id', 'karpenter.k8s.aws/capacity-reservation-interruptible', 'karpenter.k8s.aws/ec2nodeclass', 'karpenter.k8s.aws/instance-encryption-in-transit-supported', 'karpenter.k8s.aws/instance-category', 'karpenter.k8s.aws/instance-hypervisor', 'karpenter.k8s.aws/instance-family', 'karpenter.k8s.aws/instance-generation', 'karpenter.k8s.aws/instance-local-nvme', 'karpenter.k8s.aws/instance-size', 'karpenter.k8s.aws/instance-cpu', 'karpenter.k8s.aws/instance-cpu-manufacturer', 'karpenter.k8s.aws/instance-cpu-sustained-clock-speed-mhz', 'karpenter.k8s.aws/instance-memory', 'karpenter.k8s.aws/instance-ebs-bandwidth', 'karpenter.k8s.aws/instance-network-bandwidth', 'karpenter.k8s.aws/instance-gpu-name', 'karpenter.k8s.aws/instance-gpu-manufacturer', 'karpenter.k8s.aws/instance-gpu-count', 'karpenter.k8s.aws/instance-gpu-memory', 'karpenter.k8s.aws/instance-accelerator-name', 'karpenter.k8s.aws/instance-accelerator-manufacturer', 'karpenter.k8s.aws/instance-accelerator-count', 'karpenter.k8s.aws/instance-capability-flex', 'karpenter.k8s.aws/placement-group-id', 'karpenter.k8s.aws/placement-group-partition'])",messageExpression="'label ' + self.filter(k, k.contains('/') && k.split('/')[0].endsWith('karpenter.k8s.aws') && !(k in ['karpenter.k8s.aws/instance-tenancy', 'karpenter.k8s.aws/capacity-reservation-type', 'karpenter.k8s.aws/capacity-reservation-id', 'karpenter.k8s.aws/capacity-reservation-interruptible', 'karpenter.k8s.aws/ec2nodeclass', 'karpenter.k8s.aws/instance-encryption-in-transit-supported', 'karpenter.k8s.aws/instance-category', 'karpenter.k8s.aws/instance-hypervisor', 'karpenter.k8s.aws/instance-family', 'karpenter.k8s.aws/instance-generation', 'karpenter.k8s.aws/instance-local-nvme', 'karpenter.k8s.aws/instance-size', 'karpenter.k8s.aws/instance-cpu', 'karpenter.k8s.aws/instance-cpu-manufacturer', 'karpenter.k8s.aws/instance-cpu-sustained-clock-speed-mhz', 'karpenter.k8s.aws/instance-memory', 'karpenter.k8s.aws/instance-ebs-bandwidth', 'karpenter.k8s.aws/instance-network-bandwidth', 'karpenter.k8s.aws/instance-gpu-name', 'karpenter.k8s.aws/instance-gpu-manufacturer', 'karpenter.k8s.aws/instance-gpu-count', 'karpenter.k8s.aws/instance-gpu-memory', 'karpenter.k8s.aws/instance-accelerator-name', 'karpenter.k8s.aws/instance-accelerator-manufacturer', 'karpenter.k8s.aws/instance-accelerator-count', 'karpenter.k8s.aws/instance-capability-flex', 'karpenter.k8s.aws/placement-group-id', 'karpenter.k8s.aws/placement-group-partition']))[0] + ' is restricted: the karpenter.k8s.aws domain holds only the well-known labels Backstop and Karpenter set'"
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// Annotations are added to every node.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// NodeClaimTemplateSpec is the spec of the NodeClaims a NodePool creates.
type NodeClaimTemplateSpec struct {
	// Taints are put on every node of the pool; pods must tolerate them.
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:XValidation:rule="self.all(t, t.effect in ['NoSchedule', 'PreferNoSchedule', 'NoExecute'])",message="taints: effect must be one of NoSchedule, PreferNoSchedule or NoExecute"
	// +optional
	Taints []corev1.Taint `json:"taints,omitempty"`
	// StartupTaints are expected on new nodes and removed by another agent once
	// the node is set up; the scheduler does not require pods to tolerate them.
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:XValidation:rule="self.all(t, t.effect in ['NoSchedule', 'PreferNoSchedule', 'NoExecute'])",message="startupTaints: effect must be one of NoSchedule, PreferNoSchedule or NoExecute"
	// +optional
	StartupTaints []corev1.Taint `json:"startupTaints,omitempty"`
	// Requirements constrain the labels, and so the instance types, zones and
	// capacity types, of the pool's nodes.
	// +kubebuilder:validation:MaxItems=100
	// +optional
	Requirements []NodeSelectorRequirementWithMinValues `json:"requirements,omitempty"`
	// NodeClassRef names the cloud-specific class the nodes are launched from.
	// +required
	NodeClassRef *NodeClassReference `json:"nodeClassRef"`
	// TerminationGracePeriod bounds the node's drain, from its deletion.
	// Until then PodDisruptionBudgets and karpenter.sh/do-not-disrupt pods
	// hold the drain; a pod is deleted early enough to have its whole
	// terminationGracePeriodSeconds by then, and what remains at the end is
	// deleted. Unset, the drain waits as long as its pods do.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(s|m|h))+$`
	// +optional
	TerminationGracePeriod *metav1.Duration `json:"terminationGracePeriod,omitempty"`
	// ExpireAfter is how long a node lives before it is replaced, or "Never".
	// +kubebuilder:default:="720h"
	// +optional
	ExpireAfter NillableDuration `json:"expireAfter,omitzero"`
}

// ConsolidationPolicy says which nodes consolidation may remove.
// +kubebuilder:validation:Enum=WhenEmpty;WhenEmptyOrUnderutilized
type ConsolidationPolicy string

// Consolidation policies.
const (
	ConsolidationPolicyWhenEmpty                ConsolidationPolicy = "WhenEmpty"
	ConsolidationPolicyWhenEmptyOrUnderutilized ConsolidationPolicy = "WhenEmptyOrUnderutilized"
)

// DisruptionReason is why a node is disrupted; budgets may apply to some reasons only.
// +kubebuilder:validation:Enum=Underutilized;Empty;Drifted
type DisruptionReason string

// Disruption reasons a budget can name.
const (
	DisruptionReasonUnderutilized DisruptionReason = "Underutilized"
	DisruptionReasonEmpty         DisruptionReason = "Empty"
	DisruptionReasonDrifted       DisruptionReason = "Drifted"
)

// Disruption configures when a pool's nodes may be removed.
type Disruption struct {
	// ConsolidateAfter is how long a node must stay empty or underused before it
	// is consolidated, or "Never".
	// +kubebuilder:default:="0s"
	// +optional
	ConsolidateAfter NillableDuration `json:"consolidateAfter,omitzero"`
	// ConsolidationPolicy says which nodes may be consolidated.
	// +kubebuilder:default:=WhenEmptyOrUnderutilized
	// +optional
	ConsolidationPolicy ConsolidationPolicy `json:"consolidationPolicy,omitempty"`
	// Budgets cap how many nodes may be disrupted at once.
	// +kubebuilder:default:={{nodes: "10%"}}
	// +kubebuilder:validation:MaxItems=50
	// +optional
	Budgets []Budget `json:"budgets,omitempty"`
}

// Budget caps concurrent disruptions, optionally only during a schedule.
// +kubebuilder:validation:XValidation:rule="has(self.schedule) == has(self.duration)",message="budgets: 'schedule' and 'duration' must be set together"
type Budget struct {
	// Reasons this budget applies to; all reasons when empty.
	// +kubebuilder:validation:MaxItems=10
	// +optional
	Reasons []DisruptionReason `json:"reasons,omitempty"`
	// Nodes is a count ("5") or a percentage of the pool's nodes ("10%").
	// +kubebuilder:default:="10%"
	// +kubebuilder:validation:Pattern=`^((100|[0-9]{1,2})%|[0-9]+)$`
	// +kubebuilder:validation:MaxLength=16
	// +optional
	Nodes string `json:"nodes,omitempty"`
	// Schedule is a cron expression (UTC) at which the budget window opens.
	// +kubebuilder:validation:Pattern=`^(@(annually|yearly|monthly|weekly|daily|midnight|hourly))|((.+)\s(.+)\s(.+)\s(.+)\s(.+))$`
	// +kubebuilder:validation:MaxLength=128
	// +optional
	Schedule *string `json:"schedule,omitempty"`
	// Duration is how long the window stays open after each Schedule time.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^((([0-9]+(h|m))|([0-9]+h[0-9]+m))(0s)?)$`
	// +optional
	Duration *metav1.Duration `json:"duration,omitempty"`
}

// NodePoolStatus is the observed state of a NodePool.
type NodePoolStatus struct {
	// Resources is the capacity of the pool's nodes, including a "nodes" count.
	// +optional
	Resources corev1.ResourceList `json:"resources,omitempty"`
	// Nodes is the number of the pool's nodes.
	// +optional
	Nodes *int64 `json:"nodes,omitempty"`
	// NodeClassObservedGeneration is the generation of the NodeClass the
	// conditions were last judged against.
	// +optional
	NodeClassObservedGeneration int64 `json:"nodeClassObservedGeneration,omitempty"`
	// Conditions of the pool: Ready says whether it can launch nodes (its
	// NodeClassReady and ValidationSucceeded both True);
	// NodeRegistrationHealthy whether the nodes it launched lately joined.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// NodePoolList is a list of NodePools.
// +kubebuilder:object:root=true
type NodePoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NodePool `json:"items"`
}
