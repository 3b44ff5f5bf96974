// Package nodeboot reads user data as a node boots from it. Read is an
// AL2023 node (ReadBottlerocket, in bottlerocket.go, a Bottlerocket one;
// ReadWindows, in windows.go, a Windows one): it takes the MIME
// archive apart, decodes every NodeConfig part with nodeadm's API types
// (strictly: an unknown field fails, as nodeadm's own decoder does) and
// merges them in order, later parts winning, and says what the kubelet would
// register with. The local cluster's node agent boots only from it, so a
// launch whose user data would not bring a node up on AWS brings none up
// here either.
package nodeboot

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	nodeadm "github.com/awslabs/amazon-eks-ami/nodeadm/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws/bootstrap"
)

// Config is the merged NodeConfig of some user data.
type Config struct {
	nodeadm.NodeConfig
	// Scripts are the shell-script parts, run before nodeadm.
	Scripts []string
}

// Read decodes user data; an error says why nodeadm would not start.
func Read(userData string) (*Config, error) {
	parts, isMIME, err := bootstrap.Parts(userData)
	if err != nil {
		return nil, err
	}
	if !isMIME {
		return nil, errors.New("user data is not a MIME multi-part archive: nodeadm finds no NodeConfig")
	}
	out := &Config{}
	found := false
	for i, p := range parts {
		switch {
		case strings.HasPrefix(p.ContentType, bootstrap.NodeConfigType):
			var c nodeadm.NodeConfig
			var meta metav1.TypeMeta
			if err := yaml.Unmarshal(p.Body, &meta); err != nil {
				return nil, fmt.Errorf("part %d: %w", i+1, err)
			}
			if meta.APIVersion != nodeadm.GroupVersion.String() || meta.Kind != "NodeConfig" {
				return nil, fmt.Errorf("part %d: %s %s is not a %s NodeConfig", i+1, meta.APIVersion, meta.Kind, nodeadm.GroupVersion)
			}
			if err := yaml.UnmarshalStrict(p.Body, &c); err != nil {
				return nil, fmt.Errorf("part %d: NodeConfig: %w", i+1, err)
			}
			merge(&out.NodeConfig, &c)
			found = true
		case strings.HasPrefix(p.ContentType, "text/x-shellscript"):
			out.Scripts = append(out.Scripts, string(p.Body))
		default:
			return nil, fmt.Errorf("part %d: content type %q is not one nodeadm or cloud-init runs here", i+1, p.ContentType)
		}
	}
	if !found {
		return nil, errors.New("the archive has no NodeConfig part (" + bootstrap.NodeConfigType + ")")
	}
	c := out.Spec.Cluster
	switch {
	case c.Name == "":
		return nil, errors.New("NodeConfig: spec.cluster.name is missing")
	case c.APIServerEndpoint == "":
		return nil, errors.New("NodeConfig: spec.cluster.apiServerEndpoint is missing")
	case len(c.CertificateAuthority) == 0:
		return nil, errors.New("NodeConfig: spec.cluster.certificateAuthority is missing")
	case c.CIDR == "":
		return nil, errors.New("NodeConfig: spec.cluster.cidr is missing")
	}
	return out, nil
}

// merge lays b over a: set scalars win, kubelet config keys win, flags add up.
func merge(a, b *nodeadm.NodeConfig) {
	if b.Spec.Cluster.Name != "" {
		a.Spec.Cluster.Name = b.Spec.Cluster.Name
	}
	if b.Spec.Cluster.APIServerEndpoint != "" {
		a.Spec.Cluster.APIServerEndpoint = b.Spec.Cluster.APIServerEndpoint
	}
	if len(b.Spec.Cluster.CertificateAuthority) > 0 {
		a.Spec.Cluster.CertificateAuthority = b.Spec.Cluster.CertificateAuthority
	}
	if b.Spec.Cluster.CIDR != "" {
		a.Spec.Cluster.CIDR = b.Spec.Cluster.CIDR
	}
	if a.Spec.Kubelet.Config == nil {
		a.Spec.Kubelet.Config = map[string]runtime.RawExtension{}
	}
	for k, v := range b.Spec.Kubelet.Config {
		a.Spec.Kubelet.Config[k] = v
	}
	a.Spec.Kubelet.Flags = append(a.Spec.Kubelet.Flags, b.Spec.Kubelet.Flags...)
	if b.Spec.Instance.LocalStorage.Strategy != "" {
		a.Spec.Instance.LocalStorage.Strategy = b.Spec.Instance.LocalStorage.Strategy
	}
}

// KubeletValue decodes one kubelet config key into v; false when unset.
func (c *Config) KubeletValue(key string, v any) (bool, error) {
	raw, ok := c.Spec.Kubelet.Config[key]
	if !ok {
		return false, nil
	}
	if err := json.Unmarshal(raw.Raw, v); err != nil {
		return true, fmt.Errorf("kubelet config %s: %w", key, err)
	}
	return true, nil
}

// Labels are the --node-labels the kubelet registers with.
func (c *Config) Labels() (map[string]string, error) {
	out := map[string]string{}
	for _, f := range c.Spec.Kubelet.Flags {
		list, ok := strings.CutPrefix(f, "--node-labels=")
		if !ok {
			continue
		}
		for _, pair := range strings.Split(list, ",") {
			k, v, ok := strings.Cut(pair, "=")
			if !ok {
				return nil, fmt.Errorf("--node-labels: %q is not key=value", pair)
			}
			out[k] = v
		}
	}
	return out, nil
}

// Taints are the kubelet's registerWithTaints.
func (c *Config) Taints() ([]corev1.Taint, error) {
	var out []corev1.Taint
	_, err := c.KubeletValue("registerWithTaints", &out)
	return out, err
}
