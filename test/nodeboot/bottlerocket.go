package nodeboot

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	nodeadm "github.com/awslabs/amazon-eks-ami/nodeadm/api/v1alpha1"
	"github.com/pelletier/go-toml/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// bottlerocketKubernetes are the settings.kubernetes keys a Bottlerocket
// node reads; its settings API refuses any other, and the node does not
// come up.
type bottlerocketKubernetes struct {
	ClusterName                 string              `toml:"cluster-name"`
	APIServer                   string              `toml:"api-server"`
	ClusterCertificate          string              `toml:"cluster-certificate"`
	ClusterDNSIP                any                 `toml:"cluster-dns-ip"`
	ClusterDomain               string              `toml:"cluster-domain"`
	MaxPods                     *int64              `toml:"max-pods"`
	NodeLabels                  map[string]string   `toml:"node-labels"`
	NodeTaints                  map[string][]string `toml:"node-taints"`
	SystemReserved              map[string]string   `toml:"system-reserved"`
	KubeReserved                map[string]string   `toml:"kube-reserved"`
	EvictionHard                map[string]string   `toml:"eviction-hard"`
	EvictionSoft                map[string]string   `toml:"eviction-soft"`
	EvictionSoftGracePeriod     map[string]string   `toml:"eviction-soft-grace-period"`
	EvictionMaxPodGracePeriod   *int64              `toml:"eviction-max-pod-grace-period"`
	ImageGCHighThresholdPercent *int64              `toml:"image-gc-high-threshold-percent"`
	ImageGCLowThresholdPercent  *int64              `toml:"image-gc-low-threshold-percent"`
	CPUCFSQuotaEnforced         *bool               `toml:"cpu-cfs-quota-enforced"`
	ShutdownGracePeriod         string              `toml:"shutdown-grace-period"`
	PodInfraContainerImage      string              `toml:"pod-infra-container-image"`
	RegistryQPS                 *int64              `toml:"registry-qps"`
	RegistryBurst               *int64              `toml:"registry-burst"`
	EventQPS                    *int64              `toml:"event-qps"`
	EventBurst                  *int64              `toml:"event-burst"`
	KubeAPIQPS                  *int64              `toml:"kube-api-qps"`
	KubeAPIBurst                *int64              `toml:"kube-api-burst"`
	ContainerLogMaxSize         string              `toml:"container-log-max-size"`
	ContainerLogMaxFiles        *int64              `toml:"container-log-max-files"`
	CPUManagerPolicy            string              `toml:"cpu-manager-policy"`
	TopologyManagerPolicy       string              `toml:"topology-manager-policy"`
	TopologyManagerScope        string              `toml:"topology-manager-scope"`
	SeccompDefault              *bool               `toml:"seccomp-default"`
	AllowedUnsafeSysctls        []string            `toml:"allowed-unsafe-sysctls"`
}

// ReadBottlerocket decodes a Bottlerocket node's user data (TOML settings)
// as its settings API does and says what the kubelet would register with,
// in NodeConfig terms so callers read every family alike.
func ReadBottlerocket(userData string) (*Config, error) {
	var raw map[string]any
	if err := toml.Unmarshal([]byte(userData), &raw); err != nil {
		return nil, fmt.Errorf("user data is not TOML: Bottlerocket reads no settings from it: %w", err)
	}
	settings, _ := raw["settings"].(map[string]any)
	section, ok := settings["kubernetes"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("user data has no [settings.kubernetes]: the kubelet does not start")
	}
	encoded, err := toml.Marshal(section)
	if err != nil {
		return nil, err
	}
	var k bottlerocketKubernetes
	dec := toml.NewDecoder(bytes.NewReader(encoded))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&k); err != nil {
		return nil, fmt.Errorf("settings.kubernetes: %w", err)
	}
	ca, err := base64.StdEncoding.DecodeString(k.ClusterCertificate)
	if err != nil {
		return nil, fmt.Errorf("settings.kubernetes.cluster-certificate is not base64: %w", err)
	}
	out := &Config{}
	out.Spec.Cluster = nodeadm.ClusterDetails{Name: k.ClusterName, APIServerEndpoint: k.APIServer, CertificateAuthority: ca}
	config := map[string]any{}
	if k.MaxPods != nil {
		config["maxPods"] = *k.MaxPods
	}
	if k.EvictionMaxPodGracePeriod != nil {
		config["evictionMaxPodGracePeriod"] = *k.EvictionMaxPodGracePeriod
	}
	for key, m := range map[string]map[string]string{"systemReserved": k.SystemReserved, "kubeReserved": k.KubeReserved, "evictionHard": k.EvictionHard,
		"evictionSoft": k.EvictionSoft, "evictionSoftGracePeriod": k.EvictionSoftGracePeriod} {
		if len(m) > 0 {
			config[key] = m
		}
	}
	var taints []corev1.Taint
	for _, key := range sortedKeys(k.NodeTaints) {
		for _, v := range k.NodeTaints[key] {
			value, effect, ok := strings.Cut(v, ":")
			if !ok {
				value, effect = "", v
			}
			switch corev1.TaintEffect(effect) {
			case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
			default:
				return nil, fmt.Errorf("settings.kubernetes.node-taints.%s: %q has no valid effect", key, v)
			}
			taints = append(taints, corev1.Taint{Key: key, Value: value, Effect: corev1.TaintEffect(effect)})
		}
	}
	if len(taints) > 0 {
		config["registerWithTaints"] = taints
	}
	out.Spec.Kubelet.Config = map[string]runtime.RawExtension{}
	for key, v := range config {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		out.Spec.Kubelet.Config[key] = runtime.RawExtension{Raw: b}
	}
	if len(k.NodeLabels) > 0 {
		var pairs []string
		for _, key := range sortedKeys(k.NodeLabels) {
			pairs = append(pairs, key+"="+k.NodeLabels[key])
		}
		out.Spec.Kubelet.Flags = append(out.Spec.Kubelet.Flags, "--node-labels="+strings.Join(pairs, ","))
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
