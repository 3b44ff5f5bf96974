package scheduling

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Resources is a vector of quantities: cpu in millicores, memory and ephemeral
// storage in bytes, a pod count, and extended resources (GPUs and the like) by
// name. Fixed fields keep the scheduler's hot path free of map lookups.
type Resources struct {
	CPU, Memory, Storage, Pods int64
	Extended                   map[corev1.ResourceName]int64
}

// ResourcesFromList converts a Kubernetes resource list.
func ResourcesFromList(list corev1.ResourceList) Resources {
	var r Resources
	for name, q := range list {
		r.Set(name, q)
	}
	return r
}

// Set sets one quantity by name.
func (r *Resources) Set(name corev1.ResourceName, q resource.Quantity) {
	switch name {
	case corev1.ResourceCPU:
		r.CPU = q.MilliValue()
	case corev1.ResourceMemory:
		r.Memory = q.Value()
	case corev1.ResourceEphemeralStorage:
		r.Storage = q.Value()
	case corev1.ResourcePods:
		r.Pods = q.Value()
	default:
		if r.Extended == nil {
			r.Extended = map[corev1.ResourceName]int64{}
		}
		r.Extended[name] = q.Value()
	}
}

// Get returns one quantity by name, in the unit of its field.
func (r Resources) Get(name corev1.ResourceName) int64 {
	switch name {
	case corev1.ResourceCPU:
		return r.CPU
	case corev1.ResourceMemory:
		return r.Memory
	case corev1.ResourceEphemeralStorage:
		return r.Storage
	case corev1.ResourcePods:
		return r.Pods
	default:
		return r.Extended[name]
	}
}

// List converts back to a Kubernetes resource list, leaving out zeros.
func (r Resources) List() corev1.ResourceList {
	out := corev1.ResourceList{}
	if r.CPU != 0 {
		out[corev1.ResourceCPU] = *resource.NewMilliQuantity(r.CPU, resource.DecimalSI)
	}
	if r.Memory != 0 {
		out[corev1.ResourceMemory] = *resource.NewQuantity(r.Memory, resource.BinarySI)
	}
	if r.Storage != 0 {
		out[corev1.ResourceEphemeralStorage] = *resource.NewQuantity(r.Storage, resource.BinarySI)
	}
	if r.Pods != 0 {
		out[corev1.ResourcePods] = *resource.NewQuantity(r.Pods, resource.DecimalSI)
	}
	for name, v := range r.Extended {
		if v != 0 {
			out[name] = *resource.NewQuantity(v, resource.DecimalSI)
		}
	}
	return out
}

// Add returns r + o.
func (r Resources) Add(o Resources) Resources {
	out := Resources{CPU: r.CPU + o.CPU, Memory: r.Memory + o.Memory, Storage: r.Storage + o.Storage, Pods: r.Pods + o.Pods}
	out.Extended = mergeExtended(r.Extended, o.Extended, 1)
	return out
}

// Sub returns r - o.
func (r Resources) Sub(o Resources) Resources {
	out := Resources{CPU: r.CPU - o.CPU, Memory: r.Memory - o.Memory, Storage: r.Storage - o.Storage, Pods: r.Pods - o.Pods}
	out.Extended = mergeExtended(r.Extended, o.Extended, -1)
	return out
}

// Max returns the larger of each quantity.
func (r Resources) Max(o Resources) Resources {
	out := Resources{CPU: max(r.CPU, o.CPU), Memory: max(r.Memory, o.Memory), Storage: max(r.Storage, o.Storage), Pods: max(r.Pods, o.Pods)}
	if len(r.Extended)+len(o.Extended) > 0 {
		out.Extended = map[corev1.ResourceName]int64{}
		for k, v := range r.Extended {
			out.Extended[k] = v
		}
		for k, v := range o.Extended {
			out.Extended[k] = max(out.Extended[k], v)
		}
	}
	return out
}

// growTo raises r to at least o in every dimension, in place. It allocates only
// the first time an extended resource appears, which keeps it cheap inside the
// scheduler's loops over instance types.
func (r *Resources) growTo(o Resources) {
	r.CPU, r.Memory, r.Storage, r.Pods = max(r.CPU, o.CPU), max(r.Memory, o.Memory), max(r.Storage, o.Storage), max(r.Pods, o.Pods)
	for k, v := range o.Extended {
		if r.Extended == nil {
			r.Extended = map[corev1.ResourceName]int64{}
		}
		if v > r.Extended[k] {
			r.Extended[k] = v
		}
	}
}

func mergeExtended(a, b map[corev1.ResourceName]int64, sign int64) map[corev1.ResourceName]int64 {
	if len(a) == 0 && len(b) == 0 {
		return nil
	}
	out := make(map[corev1.ResourceName]int64, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] += sign * v
	}
	return out
}

// Fits reports whether r fits within capacity c in every dimension. Storage is
// checked only when requested, since instance types often leave it unknown.
func (r Resources) Fits(c Resources) bool {
	if r.CPU > c.CPU || r.Memory > c.Memory || r.Pods > c.Pods || (r.Storage > 0 && r.Storage > c.Storage) {
		return false
	}
	for k, v := range r.Extended {
		if v > 0 && v > c.Extended[k] {
			return false
		}
	}
	return true
}

// Exceeding names the dimensions in which r does not fit c, for reasons.
func (r Resources) Exceeding(c Resources) string {
	var parts []string
	add := func(name corev1.ResourceName, need, have int64, q func(int64) string) {
		if need > have {
			parts = append(parts, fmt.Sprintf("%s %s > %s", name, q(need), q(have)))
		}
	}
	milli := func(v int64) string { return resource.NewMilliQuantity(v, resource.DecimalSI).String() }
	bin := func(v int64) string { return resource.NewQuantity(v, resource.BinarySI).String() }
	dec := func(v int64) string { return resource.NewQuantity(v, resource.DecimalSI).String() }
	add(corev1.ResourceCPU, r.CPU, c.CPU, milli)
	add(corev1.ResourceMemory, r.Memory, c.Memory, bin)
	add(corev1.ResourcePods, r.Pods, c.Pods, dec)
	if r.Storage > 0 {
		add(corev1.ResourceEphemeralStorage, r.Storage, c.Storage, bin)
	}
	names := make([]string, 0, len(r.Extended))
	for k := range r.Extended {
		names = append(names, string(k))
	}
	sort.Strings(names)
	for _, k := range names {
		add(corev1.ResourceName(k), r.Extended[corev1.ResourceName(k)], c.Extended[corev1.ResourceName(k)], dec)
	}
	return strings.Join(parts, ", ")
}

// String shows the non-zero quantities.
func (r Resources) String() string {
	var parts []string
	list := r.List()
	names := make([]string, 0, len(list))
	for k := range list {
		names = append(names, string(k))
	}
	sort.Strings(names)
	for _, k := range names {
		q := list[corev1.ResourceName(k)]
		parts = append(parts, k+"="+q.String())
	}
	return strings.Join(parts, ",")
}

// PodRequests is what a pod asks of a node: its containers summed, init
// containers maxed with restartable (sidecar) init containers counted as
// running alongside everything after them, pod-level requests where set, plus
// spec.overhead and one pod.
func PodRequests(pod *corev1.Pod) Resources {
	var containers Resources
	for i := range pod.Spec.Containers {
		containers = containers.Add(ResourcesFromList(pod.Spec.Containers[i].Resources.Requests))
	}
	var sidecars, initPeak Resources
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		req := ResourcesFromList(c.Resources.Requests)
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			sidecars = sidecars.Add(req)
			initPeak = initPeak.Max(sidecars)
		} else {
			initPeak = initPeak.Max(sidecars.Add(req))
		}
	}
	total := containers.Add(sidecars).Max(initPeak)
	if pod.Spec.Resources != nil {
		// Pod-level requests replace the containers' sum for the resources they name.
		for name, q := range pod.Spec.Resources.Requests {
			total.Set(name, q)
		}
	}
	total = total.Add(ResourcesFromList(pod.Spec.Overhead))
	total.Pods = 1
	return total
}
