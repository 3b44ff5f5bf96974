package nodeboot

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	nodeadm "github.com/awslabs/amazon-eks-ami/nodeadm/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// startEKSBootstrapParams are the parameters Start-EKSBootstrap.ps1 takes;
// PowerShell stops the script at any other.
var startEKSBootstrapParams = map[string]bool{
	"EKSClusterName": true, "KubeletExtraArgs": true, "KubeProxyExtraArgs": true, "APIServerEndpoint": true,
	"Base64ClusterCA": true, "DNSClusterIP": true, "ContainerRuntime": true, "ServiceCIDR": true, "ExcludedSnatCIDRs": true,
}

// ReadWindows decodes a Windows node's user data as EC2Launch and EKS's
// Start-EKSBootstrap.ps1 read it: the <powershell> block, the call of the
// script named by $EKSBootstrapScriptFile, its -Parameter 'value' pairs
// (PowerShell's single quotes, ” for a quote) and the kubelet flags in
// -KubeletExtraArgs, and says in NodeConfig terms what the kubelet would
// register with. A flag the kubelet does not know stops it, as it would.
func ReadWindows(userData string) (*Config, error) {
	body := strings.TrimSpace(userData)
	if !strings.HasPrefix(body, "<powershell>") || !strings.HasSuffix(body, "</powershell>") {
		return nil, errors.New("user data is not a <powershell> block: EC2Launch runs nothing of it")
	}
	body = strings.TrimSuffix(strings.TrimPrefix(body, "<powershell>"), "</powershell>")
	assigned, call := false, ""
	for _, line := range strings.Split(body, "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "[string]$EKSBootstrapScriptFile = "); ok {
			assigned = strings.HasSuffix(strings.Trim(v, `"`), `\Amazon\EKS\Start-EKSBootstrap.ps1`)
		}
		if rest, ok := strings.CutPrefix(line, "& $EKSBootstrapScriptFile "); ok {
			call = rest
		}
	}
	if !assigned || call == "" {
		return nil, errors.New("the block does not call $env:ProgramFiles\\Amazon\\EKS\\Start-EKSBootstrap.ps1: the node never bootstraps")
	}
	params, err := powershellParams(call)
	if err != nil {
		return nil, err
	}
	for _, p := range []string{"EKSClusterName", "APIServerEndpoint", "Base64ClusterCA"} {
		if params[p] == "" {
			return nil, fmt.Errorf("Start-EKSBootstrap.ps1 is called without -%s", p)
		}
	}
	ca, err := base64.StdEncoding.DecodeString(params["Base64ClusterCA"])
	if err != nil {
		return nil, fmt.Errorf("-Base64ClusterCA is not base64: %w", err)
	}
	out := &Config{}
	out.Spec.Cluster = nodeadm.ClusterDetails{Name: params["EKSClusterName"], APIServerEndpoint: params["APIServerEndpoint"], CertificateAuthority: ca}
	if err := kubeletFlags(out, params["KubeletExtraArgs"]); err != nil {
		return nil, fmt.Errorf("-KubeletExtraArgs: %w", err)
	}
	return out, nil
}

// powershellParams reads -Name 'value' pairs.
func powershellParams(s string) (map[string]string, error) {
	out := map[string]string{}
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		if s[0] != '-' {
			return nil, fmt.Errorf("Start-EKSBootstrap.ps1 call: %q is not a -Parameter", s)
		}
		name, rest, _ := strings.Cut(s[1:], " ")
		if !startEKSBootstrapParams[name] {
			return nil, fmt.Errorf("Start-EKSBootstrap.ps1 has no parameter -%s: PowerShell stops the script", name)
		}
		rest = strings.TrimSpace(rest)
		if !strings.HasPrefix(rest, "'") {
			return nil, fmt.Errorf("-%s: the value is not a single-quoted string", name)
		}
		var v strings.Builder
		i := 1
		for ; i < len(rest); i++ {
			if rest[i] == '\'' {
				if i+1 < len(rest) && rest[i+1] == '\'' {
					v.WriteByte('\'')
					i++
					continue
				}
				break
			}
			v.WriteByte(rest[i])
		}
		if i >= len(rest) {
			return nil, fmt.Errorf("-%s: the quote is never closed", name)
		}
		out[name], s = v.String(), rest[i+1:]
	}
	return out, nil
}

// kubeletFlags reads kubelet flags (words split at spaces outside double
// quotes, the quotes removed, as Windows passes a command line) into cfg.
func kubeletFlags(cfg *Config, args string) error {
	var words []string
	var cur strings.Builder
	quoted, some := false, false
	for _, r := range args {
		switch {
		case r == '"':
			quoted, some = !quoted, true
		case r == ' ' && !quoted:
			if some {
				words = append(words, cur.String())
			}
			cur.Reset()
			some = false
		default:
			cur.WriteRune(r)
			some = true
		}
	}
	if quoted {
		return errors.New("a double quote is never closed")
	}
	if some {
		words = append(words, cur.String())
	}
	config := map[string]any{}
	pairs := func(v, sep string) (map[string]string, error) {
		m := map[string]string{}
		for _, p := range strings.Split(v, ",") {
			k, val, ok := strings.Cut(p, sep)
			if !ok {
				return nil, fmt.Errorf("%q is not key%svalue", p, sep)
			}
			m[k] = val
		}
		return m, nil
	}
	for _, w := range words {
		flag, value, ok := strings.Cut(w, "=")
		if !ok {
			return fmt.Errorf("%s has no value", w)
		}
		var err error
		switch flag {
		case "--node-labels":
			cfg.Spec.Kubelet.Flags = append(cfg.Spec.Kubelet.Flags, w)
		case "--register-with-taints":
			var taints []corev1.Taint
			for _, t := range strings.Split(value, ",") {
				kv, effect, ok := strings.Cut(t, ":")
				if !ok {
					return fmt.Errorf("--register-with-taints: %q has no effect", t)
				}
				k, v, _ := strings.Cut(kv, "=")
				taints = append(taints, corev1.Taint{Key: k, Value: v, Effect: corev1.TaintEffect(effect)})
			}
			config["registerWithTaints"] = taints
		case "--max-pods", "--pods-per-core", "--image-gc-high-threshold", "--image-gc-low-threshold":
			var n int
			if n, err = strconv.Atoi(value); err != nil {
				return fmt.Errorf("%s: %w", flag, err)
			}
			config[map[string]string{"--max-pods": "maxPods", "--pods-per-core": "podsPerCore",
				"--image-gc-high-threshold": "imageGCHighThresholdPercent", "--image-gc-low-threshold": "imageGCLowThresholdPercent"}[flag]] = n
		case "--cpu-cfs-quota":
			var b bool
			if b, err = strconv.ParseBool(value); err != nil {
				return fmt.Errorf("%s: %w", flag, err)
			}
			config["cpuCFSQuota"] = b
		case "--eviction-max-pod-grace-period":
			var n int
			if n, err = strconv.Atoi(value); err != nil {
				return fmt.Errorf("%s: %w", flag, err)
			}
			config["evictionMaxPodGracePeriod"] = n
		case "--system-reserved", "--kube-reserved", "--eviction-hard", "--eviction-soft", "--eviction-soft-grace-period":
			sep := "="
			if flag == "--eviction-hard" || flag == "--eviction-soft" {
				sep = "<"
			}
			var m map[string]string
			if m, err = pairs(value, sep); err != nil {
				return fmt.Errorf("%s: %w", flag, err)
			}
			config[map[string]string{"--system-reserved": "systemReserved", "--kube-reserved": "kubeReserved",
				"--eviction-hard": "evictionHard", "--eviction-soft": "evictionSoft", "--eviction-soft-grace-period": "evictionSoftGracePeriod"}[flag]] = m
		default:
			return fmt.Errorf("the kubelet has no flag %s: it does not start", flag)
		}
	}
	cfg.Spec.Kubelet.Config = map[string]runtime.RawExtension{}
	for k, v := range config {
		raw, err := json.Marshal(v)
		if err != nil {
			return err
		}
		cfg.Spec.Kubelet.Config[k] = runtime.RawExtension{Raw: raw}
	}
	return nil
}
