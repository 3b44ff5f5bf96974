package scheduling_test

import (
	"fmt"
	"math/rand"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// diversePods builds a workload shaped like Karpenter's diverse benchmark, for
// sizes and catalogs its exported files do not cover: equal fifths of generic
// pods, zone-spread pods, hostname-spread pods, zone self-affinity pods and
// hostname anti-affinity pods.
func diversePods(n int, seed int64) []*corev1.Pod {
	r := rand.New(rand.NewSource(seed))
	letters := []string{"a", "b", "c", "d", "e", "f", "g"}
	cpus := []string{"100m", "250m", "500m", "1000m", "1500m"}
	mems := []string{"100Mi", "256Mi", "512Mi", "1Gi", "2Gi", "4Gi"}
	newPod := func(i int, labels map[string]string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%d", i), Namespace: "default", Labels: labels},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse(cpus[r.Intn(len(cpus))]),
				corev1.ResourceMemory: resource.MustParse(mems[r.Intn(len(mems))]),
			}}}}},
		}
	}
	spread := func(key string) []corev1.TopologySpreadConstraint {
		return []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: key, WhenUnsatisfiable: corev1.DoNotSchedule,
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"my-label": letters[r.Intn(len(letters))]}}}}
	}
	pods := make([]*corev1.Pod, 0, n)
	for i := 0; i < n; i++ {
		switch i * 5 / n {
		case 1:
			p := newPod(i, map[string]string{"my-label": letters[r.Intn(len(letters))]})
			p.Spec.TopologySpreadConstraints = spread(corev1.LabelTopologyZone)
			pods = append(pods, p)
		case 2:
			p := newPod(i, map[string]string{"my-label": letters[r.Intn(len(letters))]})
			p.Spec.TopologySpreadConstraints = spread(corev1.LabelHostname)
			pods = append(pods, p)
		case 3:
			v := letters[r.Intn(len(letters))]
			p := newPod(i, map[string]string{"my-affinity": v})
			p.Spec.Affinity = &corev1.Affinity{PodAffinity: &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
				LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"my-affinity": v}}, TopologyKey: corev1.LabelTopologyZone}}}}
			pods = append(pods, p)
		case 4:
			p := newPod(i, map[string]string{"app": "nginx"})
			p.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
				LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "nginx"}}, TopologyKey: corev1.LabelHostname}}}}
			pods = append(pods, p)
		default:
			pods = append(pods, newPod(i, map[string]string{"my-label": letters[r.Intn(len(letters))]}))
		}
	}
	return pods
}
