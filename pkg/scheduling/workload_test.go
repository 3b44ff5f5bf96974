package scheduling_test

import (
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/scheduling"
)

// The exact input of Karpenter's scheduling benchmark, exported as data (see
// testdata/karpenter-workload/SOURCE.md), so results compare one to one.

type karpenterInstanceType struct {
	Name         string `json:"name"`
	Requirements []struct {
		Key      string   `json:"key"`
		Operator string   `json:"operator"`
		Values   []string `json:"values"`
	} `json:"requirements"`
	Capacity corev1.ResourceList `json:"capacity"`
	Overhead struct {
		Total corev1.ResourceList `json:"total"`
	} `json:"overhead"`
	Offerings []struct {
		Zone         string  `json:"zone"`
		CapacityType string  `json:"capacityType"`
		Price        float64 `json:"price"`
		Available    bool    `json:"available"`
	} `json:"offerings"`
}

func readGzipJSON(name string, into any) error {
	f, err := os.Open(filepath.Join("testdata", "karpenter-workload", name))
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	return json.NewDecoder(zr).Decode(into)
}

func loadKarpenterInstanceTypes() ([]*scheduling.InstanceType, error) {
	var data struct {
		InstanceTypes []karpenterInstanceType `json:"instanceTypes"`
	}
	if err := readGzipJSON("instance-types-400.json.gz", &data); err != nil {
		return nil, err
	}
	var out []*scheduling.InstanceType
	for _, kit := range data.InstanceTypes {
		it := &scheduling.InstanceType{
			Name:         kit.Name,
			Requirements: scheduling.Requirements{},
			Capacity:     scheduling.ResourcesFromList(kit.Capacity),
			Overhead:     scheduling.ResourcesFromList(kit.Overhead.Total),
		}
		for _, r := range kit.Requirements {
			// Zone and capacity type are the offerings' business.
			if r.Key == corev1.LabelTopologyZone || r.Key == v1.CapacityTypeLabelKey {
				continue
			}
			req, err := scheduling.NewRequirement(r.Key, v1.NodeSelectorOperator(r.Operator), r.Values...)
			if err != nil {
				return nil, err
			}
			it.Requirements.Add(req)
		}
		for _, o := range kit.Offerings {
			it.Offerings = append(it.Offerings, scheduling.Offering{Zone: o.Zone, CapacityType: o.CapacityType, Price: o.Price, Available: o.Available})
		}
		out = append(out, it)
	}
	return out, nil
}

func loadKarpenterPods(name string) ([]*corev1.Pod, error) {
	var list corev1.PodList
	if err := readGzipJSON(name, &list); err != nil {
		return nil, err
	}
	pods := make([]*corev1.Pod, len(list.Items))
	for i := range list.Items {
		pods[i] = &list.Items[i]
	}
	return pods, nil
}

// karpenterPool is the benchmark's one NodePool: no requirements, huge limits.
func karpenterPool(types []*scheduling.InstanceType) *scheduling.NodePool {
	return &scheduling.NodePool{
		Name: "default", Requirements: scheduling.Requirements{}, InstanceTypes: types,
		Labels: map[string]string{"testing/cluster": "unspecified"},
		Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10M"), corev1.ResourceMemory: resource.MustParse("10000000Gi")},
	}
}
