// Package bootstrap writes the user data a node boots from: what tells the
// kubelet where the API server is, which CA to trust, and how the NodeClaim
// wants it configured, per AMI family: AL2023 a MIME archive ending with a
// nodeadm NodeConfig (nodeadm's own API types), AL2 one ending with a
// bootstrap.sh call, Bottlerocket TOML settings, Windows a
// Start-EKSBootstrap call; the user's own data is kept, ours winning.
package bootstrap

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/textproto"
	"sort"
	"strings"

	nodeadm "github.com/awslabs/amazon-eks-ami/nodeadm/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
)

// Cluster is what a node must know of its cluster to join it.
type Cluster struct {
	Name     string
	Endpoint string
	// CA is the cluster's certificate authority, PEM.
	CA []byte
	// ServiceCIDR is the Service CIDR (IPv4, or IPv6 on an IPv6 cluster).
	ServiceCIDR string
}

// Node is what one launch template's nodes are configured with.
type Node struct {
	Cluster Cluster
	Kubelet *awsv1.KubeletConfiguration
	// Labels go on the Node at registration (the kubelet's --node-labels).
	Labels map[string]string
	// Taints the kubelet registers the Node with: the NodeClaim's taints,
	// startup taints and the unregistered taint.
	Taints []corev1.Taint
	// InstanceStorePolicy RAID0 makes the instance stores one volume.
	InstanceStorePolicy *string
	// UserData is the EC2NodeClass's spec.userData, kept as earlier parts.
	UserData *string
}

// NodeConfigType is the MIME type nodeadm reads NodeConfig parts from.
const NodeConfigType = "application/node.eks.aws"

// Boundary separates the parts of the archives written here.
const Boundary = "//"

// AL2023 returns the user data of an AL2023 node: a MIME multi-part archive
// of the user's parts (a MIME archive's parts, a NodeConfig, or a script),
// then Backstop's NodeConfig, which nodeadm merges last.
func AL2023(n Node) (string, error) {
	if err := checkCluster(n); err != nil {
		return "", err
	}
	parts, err := userParts(n.UserData)
	if err != nil {
		return "", err
	}
	config, err := nodeConfig(n)
	if err != nil {
		return "", err
	}
	doc, err := yaml.Marshal(config)
	if err != nil {
		return "", err
	}
	parts = append(parts, Part{ContentType: NodeConfigType, Body: append([]byte("---\n"), doc...)})
	return Archive(parts)
}

// Part is one part of a MIME archive.
type Part struct {
	ContentType string
	Body        []byte
}

// Archive writes parts as a multipart/mixed archive, as cloud-init and
// nodeadm read it.
func Archive(parts []Part) (string, error) {
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	if err := w.SetBoundary(Boundary); err != nil {
		return "", err
	}
	for _, p := range parts {
		pw, err := w.CreatePart(textproto.MIMEHeader{"Content-Type": {p.ContentType}})
		if err != nil {
			return "", err
		}
		if _, err := pw.Write(p.Body); err != nil {
			return "", err
		}
	}
	if err := w.Close(); err != nil {
		return "", err
	}
	return fmt.Sprintf("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=%q\r\n\r\n", Boundary) + body.String(), nil
}

// Parts reads a MIME archive's parts; ok is false when data is not one.
func Parts(data string) (parts []Part, ok bool, err error) {
	// The headers end at the first empty line, CRLF or LF; the body is
	// kept as it is, so a part's script keeps its line endings.
	header, body, found := strings.Cut(data, "\r\n\r\n")
	if lf, lfBody, ok := strings.Cut(data, "\n\n"); ok && (!found || len(lf) < len(header)) {
		header, body, found = lf, lfBody, true
	}
	header = strings.ReplaceAll(header, "\r\n", "\n")
	if !found || !strings.HasPrefix(strings.TrimSpace(header), "MIME-Version:") && !strings.Contains(header, "Content-Type:") {
		return nil, false, nil
	}
	var contentType string
	for _, line := range strings.Split(header, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "Content-Type") {
			contentType = strings.TrimSpace(v)
		}
	}
	media, params, err := mime.ParseMediaType(contentType)
	if err != nil || !strings.HasPrefix(media, "multipart/") {
		return nil, false, nil
	}
	r := multipart.NewReader(strings.NewReader(body), params["boundary"])
	for {
		p, err := r.NextPart()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return parts, true, nil
			}
			return nil, true, fmt.Errorf("reading the MIME archive: %w", err)
		}
		var b bytes.Buffer
		if _, err := b.ReadFrom(p); err != nil {
			return nil, true, err
		}
		parts = append(parts, Part{ContentType: p.Header.Get("Content-Type"), Body: b.Bytes()})
	}
}

// userParts turns spec.userData into archive parts: a MIME archive gives its
// parts, a NodeConfig one part, anything else is a shell script.
func userParts(userData *string) ([]Part, error) {
	if userData == nil || strings.TrimSpace(*userData) == "" {
		return nil, nil
	}
	data := *userData
	parts, isMIME, err := Parts(data)
	if err != nil {
		return nil, fmt.Errorf("spec.userData looks like a MIME archive but cannot be read: %w; fix the archive, or give a shell script or a NodeConfig", err)
	}
	if isMIME {
		return parts, nil
	}
	var meta metav1.TypeMeta
	if yaml.Unmarshal([]byte(data), &meta) == nil && meta.Kind == "NodeConfig" {
		if meta.APIVersion != nodeadm.GroupVersion.String() {
			return nil, fmt.Errorf("spec.userData is a NodeConfig of apiVersion %q; nodeadm reads %s", meta.APIVersion, nodeadm.GroupVersion)
		}
		return []Part{{ContentType: NodeConfigType, Body: []byte(data)}}, nil
	}
	return []Part{{ContentType: "text/x-shellscript; charset=\"us-ascii\"", Body: []byte(data)}}, nil
}

// nodeConfig is Backstop's NodeConfig for n.
func nodeConfig(n Node) (*nodeadm.NodeConfig, error) {
	c := &nodeadm.NodeConfig{
		TypeMeta: metav1.TypeMeta{APIVersion: nodeadm.GroupVersion.String(), Kind: "NodeConfig"},
		Spec: nodeadm.NodeConfigSpec{Cluster: nodeadm.ClusterDetails{
			Name: n.Cluster.Name, APIServerEndpoint: n.Cluster.Endpoint, CertificateAuthority: n.Cluster.CA, CIDR: n.Cluster.ServiceCIDR,
		}},
	}
	config := map[string]any{}
	if k := n.Kubelet; k != nil {
		set := func(key string, v any, present bool) {
			if present {
				config[key] = v
			}
		}
		set("maxPods", k.MaxPods, k.MaxPods != nil)
		set("podsPerCore", k.PodsPerCore, k.PodsPerCore != nil)
		set("systemReserved", k.SystemReserved, len(k.SystemReserved) > 0)
		set("kubeReserved", k.KubeReserved, len(k.KubeReserved) > 0)
		set("evictionHard", k.EvictionHard, len(k.EvictionHard) > 0)
		set("evictionSoft", k.EvictionSoft, len(k.EvictionSoft) > 0)
		set("evictionSoftGracePeriod", k.EvictionSoftGracePeriod, len(k.EvictionSoftGracePeriod) > 0)
		set("evictionMaxPodGracePeriod", k.EvictionMaxPodGracePeriod, k.EvictionMaxPodGracePeriod != nil)
		set("imageGCHighThresholdPercent", k.ImageGCHighThresholdPercent, k.ImageGCHighThresholdPercent != nil)
		set("imageGCLowThresholdPercent", k.ImageGCLowThresholdPercent, k.ImageGCLowThresholdPercent != nil)
		set("cpuCFSQuota", k.CPUCFSQuota, k.CPUCFSQuota != nil)
		set("clusterDNS", k.ClusterDNS, len(k.ClusterDNS) > 0)
	}
	if _, ok := config["clusterDNS"]; !ok {
		dns, err := ClusterDNS(n.Cluster.ServiceCIDR)
		if err != nil {
			return nil, err
		}
		config["clusterDNS"] = []string{dns}
	}
	if len(n.Taints) > 0 {
		config["registerWithTaints"] = n.Taints
	}
	c.Spec.Kubelet.Config = map[string]runtime.RawExtension{}
	for k, v := range config {
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		c.Spec.Kubelet.Config[k] = runtime.RawExtension{Raw: raw}
	}
	if len(n.Labels) > 0 {
		keys := make([]string, 0, len(n.Labels))
		for k := range n.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		pairs := make([]string, len(keys))
		for i, k := range keys {
			pairs[i] = k + "=" + n.Labels[k]
		}
		c.Spec.Kubelet.Flags = []string{"--node-labels=" + strings.Join(pairs, ",")}
	}
	if p := n.InstanceStorePolicy; p != nil && *p == "RAID0" {
		c.Spec.Instance.LocalStorage.Strategy = nodeadm.LocalStorageRAID0
	}
	return c, nil
}

// ClusterDNS is the cluster DNS address EKS gives a cluster: the tenth
// address of its Service CIDR (kube-dns's ClusterIP).
func ClusterDNS(serviceCIDR string) (string, error) {
	_, network, err := net.ParseCIDR(serviceCIDR)
	if err != nil {
		return "", fmt.Errorf("service CIDR %q: %w", serviceCIDR, err)
	}
	ip := append(net.IP(nil), network.IP...)
	ip[len(ip)-1] += 10
	return ip.String(), nil
}
