package bootstrap

import (
	"encoding/base64"
	"fmt"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"
	corev1 "k8s.io/api/core/v1"
)

// kubeletArgs are the kubelet flags AL2's bootstrap.sh and Windows's
// Start-EKSBootstrap pass on: labels, taints, max pods, reservations and
// eviction thresholds, in a stable order.
func kubeletArgs(n Node) []string {
	var args []string
	if len(n.Labels) > 0 {
		args = append(args, fmt.Sprintf("--node-labels=%q", joinPairs(n.Labels, "=")))
	}
	if len(n.Taints) > 0 {
		taints := make([]string, len(n.Taints))
		for i, t := range n.Taints {
			taints[i] = taintString(t)
		}
		args = append(args, fmt.Sprintf("--register-with-taints=%q", strings.Join(taints, ",")))
	}
	if k := n.Kubelet; k != nil {
		if k.MaxPods != nil {
			args = append(args, fmt.Sprintf("--max-pods=%d", *k.MaxPods))
		}
		if k.PodsPerCore != nil {
			args = append(args, fmt.Sprintf("--pods-per-core=%d", *k.PodsPerCore))
		}
		for flag, m := range map[string]map[string]string{"--system-reserved": k.SystemReserved, "--kube-reserved": k.KubeReserved,
			"--eviction-hard": k.EvictionHard, "--eviction-soft": k.EvictionSoft} {
			if len(m) > 0 {
				sep := "="
				if strings.HasPrefix(flag, "--eviction") {
					sep = "<"
				}
				args = append(args, fmt.Sprintf("%s=%q", flag, joinPairs(m, sep)))
			}
		}
		if len(k.EvictionSoftGracePeriod) > 0 {
			// The kubelet refuses a soft threshold without its grace period.
			periods := make(map[string]string, len(k.EvictionSoftGracePeriod))
			for signal, d := range k.EvictionSoftGracePeriod {
				periods[signal] = d.Duration.String()
			}
			args = append(args, fmt.Sprintf("--eviction-soft-grace-period=%q", joinPairs(periods, "=")))
		}
		if k.EvictionMaxPodGracePeriod != nil {
			args = append(args, fmt.Sprintf("--eviction-max-pod-grace-period=%d", *k.EvictionMaxPodGracePeriod))
		}
		if k.ImageGCHighThresholdPercent != nil {
			args = append(args, fmt.Sprintf("--image-gc-high-threshold=%d", *k.ImageGCHighThresholdPercent))
		}
		if k.ImageGCLowThresholdPercent != nil {
			args = append(args, fmt.Sprintf("--image-gc-low-threshold=%d", *k.ImageGCLowThresholdPercent))
		}
		if k.CPUCFSQuota != nil {
			args = append(args, fmt.Sprintf("--cpu-cfs-quota=%t", *k.CPUCFSQuota))
		}
	}
	sort.Strings(args)
	return args
}

func joinPairs(m map[string]string, sep string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	pairs := make([]string, len(keys))
	for i, k := range keys {
		pairs[i] = k + sep + m[k]
	}
	return strings.Join(pairs, ",")
}

func taintString(t corev1.Taint) string {
	if t.Value == "" {
		return t.Key + ":" + string(t.Effect)
	}
	return t.Key + "=" + t.Value + ":" + string(t.Effect)
}

// dnsIP is the cluster DNS address: spec.kubelet.clusterDNS's first, else
// the Service CIDR's tenth.
func dnsIP(n Node) (string, error) {
	if n.Kubelet != nil && len(n.Kubelet.ClusterDNS) > 0 {
		return n.Kubelet.ClusterDNS[0], nil
	}
	return ClusterDNS(n.Cluster.ServiceCIDR)
}

func checkCluster(n Node) error {
	if n.Cluster.Name == "" || n.Cluster.Endpoint == "" || len(n.Cluster.CA) == 0 || n.Cluster.ServiceCIDR == "" {
		return fmt.Errorf("the cluster's name, endpoint, CA and service CIDR are all needed for a node to join; have name %q, endpoint %q, %d bytes of CA, service CIDR %q",
			n.Cluster.Name, n.Cluster.Endpoint, len(n.Cluster.CA), n.Cluster.ServiceCIDR)
	}
	return nil
}

// AL2 returns the user data of an Amazon Linux 2 node: a MIME archive of the
// user's parts (a MIME archive's parts or a shell script), then a script
// that calls /etc/eks/bootstrap.sh with the cluster and the kubelet's flags.
func AL2(n Node) (string, error) {
	if err := checkCluster(n); err != nil {
		return "", err
	}
	dns, err := dnsIP(n)
	if err != nil {
		return "", err
	}
	parts, err := userParts(n.UserData)
	if err != nil {
		return "", err
	}
	for _, p := range parts {
		if strings.HasPrefix(p.ContentType, NodeConfigType) {
			return "", fmt.Errorf("spec.userData holds a nodeadm NodeConfig, which AL2 nodes do not read; give a shell script or a MIME archive")
		}
	}
	// bootstrap.sh sets maxPods from its table of the type's ENI limit, as
	// Backstop counts it, unless told not to: only when --max-pods is given.
	maxPods := ""
	if n.Kubelet != nil && n.Kubelet.MaxPods != nil {
		maxPods = " --use-max-pods false"
	}
	script := fmt.Sprintf("#!/bin/bash -xe\nexec > >(tee /var/log/user-data.log|logger -t user-data -s 2>/dev/console) 2>&1\n"+
		"/etc/eks/bootstrap.sh '%s' --apiserver-endpoint '%s' --b64-cluster-ca '%s' --dns-cluster-ip '%s'%s --kubelet-extra-args '%s'\n",
		n.Cluster.Name, n.Cluster.Endpoint, base64.StdEncoding.EncodeToString(n.Cluster.CA), dns, maxPods, strings.Join(kubeletArgs(n), " "))
	if p := n.InstanceStorePolicy; p != nil && *p == "RAID0" {
		script += "/bin/setup-local-disks raid0\n"
	}
	parts = append(parts, Part{ContentType: "text/x-shellscript; charset=\"us-ascii\"", Body: []byte(script)})
	return Archive(parts)
}

// Bottlerocket returns the TOML settings of a Bottlerocket node: the user's
// TOML with settings.kubernetes' cluster fields, DNS, max pods,
// reservations, eviction, labels and taints set over it (ours win).
func Bottlerocket(n Node) (string, error) {
	if err := checkCluster(n); err != nil {
		return "", err
	}
	dns, err := dnsIP(n)
	if err != nil {
		return "", err
	}
	doc := map[string]any{}
	if n.UserData != nil && strings.TrimSpace(*n.UserData) != "" {
		if err := toml.Unmarshal([]byte(*n.UserData), &doc); err != nil {
			return "", fmt.Errorf("spec.userData is not TOML, which Bottlerocket reads: %w", err)
		}
	}
	settings := table(doc, "settings")
	k8s := table(settings, "kubernetes")
	k8s["cluster-name"] = n.Cluster.Name
	k8s["api-server"] = n.Cluster.Endpoint
	k8s["cluster-certificate"] = base64.StdEncoding.EncodeToString(n.Cluster.CA)
	k8s["cluster-dns-ip"] = dns
	if len(n.Labels) > 0 {
		labels := table(k8s, "node-labels")
		for k, v := range n.Labels {
			labels[k] = v
		}
	}
	if len(n.Taints) > 0 {
		taints := table(k8s, "node-taints")
		for _, t := range n.Taints {
			value := string(t.Effect)
			if t.Value != "" {
				value = t.Value + ":" + value
			}
			list, _ := taints[t.Key].([]any)
			taints[t.Key] = append(list, value)
		}
	}
	if k := n.Kubelet; k != nil {
		if k.MaxPods != nil {
			k8s["max-pods"] = int64(*k.MaxPods)
		}
		periods := map[string]string{}
		for signal, d := range k.EvictionSoftGracePeriod {
			periods[signal] = d.Duration.String()
		}
		for key, m := range map[string]map[string]string{"system-reserved": k.SystemReserved, "kube-reserved": k.KubeReserved, "eviction-hard": k.EvictionHard,
			"eviction-soft": k.EvictionSoft, "eviction-soft-grace-period": periods} {
			if len(m) > 0 {
				t := table(k8s, key)
				for rk, rv := range m {
					t[rk] = rv
				}
			}
		}
		if k.EvictionMaxPodGracePeriod != nil {
			k8s["eviction-max-pod-grace-period"] = int64(*k.EvictionMaxPodGracePeriod)
		}
		if k.ImageGCHighThresholdPercent != nil {
			k8s["image-gc-high-threshold-percent"] = int64(*k.ImageGCHighThresholdPercent)
		}
		if k.ImageGCLowThresholdPercent != nil {
			k8s["image-gc-low-threshold-percent"] = int64(*k.ImageGCLowThresholdPercent)
		}
		if k.CPUCFSQuota != nil {
			k8s["cpu-cfs-quota-enforced"] = *k.CPUCFSQuota
		}
	}
	out, err := toml.Marshal(doc)
	if err != nil {
		return "", err
	}
	return string(out), nil
}

// table returns parent's table under key, making it when missing.
func table(parent map[string]any, key string) map[string]any {
	if t, ok := parent[key].(map[string]any); ok {
		return t
	}
	t := map[string]any{}
	parent[key] = t
	return t
}

// Windows returns the user data of a Windows node: the user's PowerShell,
// then the Start-EKSBootstrap call with the cluster and the kubelet's flags,
// in one <powershell> block.
func Windows(n Node) (string, error) {
	if err := checkCluster(n); err != nil {
		return "", err
	}
	dns, err := dnsIP(n)
	if err != nil {
		return "", err
	}
	user := ""
	if n.UserData != nil {
		user = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(*n.UserData), "<powershell>"), "</powershell>"))
		if user != "" {
			user += "\n"
		}
	}
	return fmt.Sprintf("<powershell>\n%s[string]$EKSBootstrapScriptFile = \"$env:ProgramFiles\\Amazon\\EKS\\Start-EKSBootstrap.ps1\"\n"+
		"& $EKSBootstrapScriptFile -EKSClusterName '%s' -APIServerEndpoint '%s' -Base64ClusterCA '%s' -DNSClusterIP '%s' -KubeletExtraArgs '%s'\n</powershell>\n",
		user, n.Cluster.Name, n.Cluster.Endpoint, base64.StdEncoding.EncodeToString(n.Cluster.CA), dns, strings.Join(kubeletArgs(n), " ")), nil
}

// For returns the user data of a family (al2023, al2, bottlerocket,
// windows2019/2022/2025); custom and unknown families get spec.userData
// unchanged.
func For(family string, n Node) (string, error) {
	switch {
	case family == "al2023":
		return AL2023(n)
	case family == "al2":
		return AL2(n)
	case family == "bottlerocket":
		return Bottlerocket(n)
	case strings.HasPrefix(family, "windows"):
		return Windows(n)
	default:
		if n.UserData == nil {
			return "", nil
		}
		return *n.UserData, nil
	}
}
