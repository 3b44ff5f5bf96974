package v1

import corev1 "k8s.io/api/core/v1"

// Well-known label keys. They are Karpenter's, so that node selectors, dashboards
// and scripts written for Karpenter keep working.
const (
	NodePoolLabelKey     = Group + "/nodepool"
	CapacityTypeLabelKey = Group + "/capacity-type"
	NodeClaimLabelKey    = Group + "/nodeclaim"
	RegisteredLabelKey   = Group + "/registered"
	InitializedLabelKey  = Group + "/initialized"

	CapacityTypeSpot     = "spot"
	CapacityTypeOnDemand = "on-demand"
	// CapacityTypeReserved is capacity an account reserved ahead (On-Demand
	// Capacity Reservations): launched into first, before Spot.
	CapacityTypeReserved = "reserved"

	// TerminationFinalizer holds NodeClaims and Nodes until their instance is gone.
	TerminationFinalizer = Group + "/termination"

	// UnregisteredTaintKey keeps pods off a node until Backstop has adopted it.
	UnregisteredTaintKey = Group + "/unregistered"
	// DisruptedTaintKey marks a node that is being drained.
	DisruptedTaintKey = Group + "/disrupted"

	// ReclaimAtAnnotation (RFC 3339) is when the cloud takes a NodeClaim's
	// instance back, as a Spot interruption warning says: its drain ends
	// then, whatever the terminationGracePeriod. Backstop's own.
	ReclaimAtAnnotation = "backstop.sh/reclaim-at"
	// InterruptedAnnotation says why a NodeClaim is being replaced ahead of
	// its drain: the interruption message's kind. Backstop's own.
	InterruptedAnnotation = "backstop.sh/interrupted"
	// ReplacingAnnotation on a NodeClaim says it is being replaced,
	// replacement first, and where its pods go: the pools of its
	// replacements, or existing nodes. Backstop's own.
	ReplacingAnnotation = "backstop.sh/replacing-to"
	// TerminationTimestampAnnotation (RFC 3339) on a deleting NodeClaim is
	// when its drain ends and the pods still on its node are deleted:
	// deletion plus terminationGracePeriod. Karpenter's name, so that tools
	// reading it keep working.
	TerminationTimestampAnnotation = Group + "/nodeclaim-termination-timestamp"
	// DoNotDisruptAnnotation ("true") on a pod, Node or NodeClaim keeps
	// voluntary disruption away from its node; on a pod it also keeps the
	// drain from evicting it until its node's termination deadline. On a
	// pod it may be a duration ("4h") after the pod started.
	DoNotDisruptAnnotation = Group + "/do-not-disrupt"
)

// UnregisteredNoExecuteTaint is put on every node at launch and removed at registration.
var UnregisteredNoExecuteTaint = corev1.Taint{Key: UnregisteredTaintKey, Effect: corev1.TaintEffectNoExecute}

// DisruptedNoScheduleTaint is put on a node chosen for disruption, when its
// replacement begins, and on every node before it is drained.
var DisruptedNoScheduleTaint = corev1.Taint{Key: DisruptedTaintKey, Effect: corev1.TaintEffectNoSchedule}

// NormalizedLabels maps deprecated beta label keys to their stable names.
var NormalizedLabels = map[string]string{
	corev1.LabelFailureDomainBetaZone:   corev1.LabelTopologyZone,
	corev1.LabelFailureDomainBetaRegion: corev1.LabelTopologyRegion,
	"beta.kubernetes.io/arch":           corev1.LabelArchStable,
	"beta.kubernetes.io/os":             corev1.LabelOSStable,
	corev1.LabelInstanceType:            corev1.LabelInstanceTypeStable,
}
