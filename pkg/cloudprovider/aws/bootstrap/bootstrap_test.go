package bootstrap_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws/bootstrap"
	"github.com/backstop-sh/backstop/test/nodeboot"
)

var update = flag.Bool("update", false, "rewrite the golden files")

const ca = "-----BEGIN CERTIFICATE-----\nMIIBdummy\n-----END CERTIFICATE-----\n"

func node(userData *string) bootstrap.Node {
	return bootstrap.Node{
		Cluster: bootstrap.Cluster{Name: "my-cluster", Endpoint: "https://ABCD.gr7.us-east-1.eks.amazonaws.com", CA: []byte(ca), ServiceCIDR: "172.20.0.0/16"},
		Kubelet: &awsv1.KubeletConfiguration{
			MaxPods: ptr.To[int32](58), SystemReserved: map[string]string{"cpu": "100m"}, KubeReserved: map[string]string{"memory": "512Mi"},
			EvictionHard: map[string]string{"memory.available": "5%"}, EvictionSoft: map[string]string{"memory.available": "10%"},
			EvictionSoftGracePeriod: map[string]metav1.Duration{"memory.available": {Duration: 60_000_000_000}}, CPUCFSQuota: ptr.To(true),
		},
		Labels:              map[string]string{"karpenter.sh/nodepool": "spot", "team": "data"},
		Taints:              []corev1.Taint{{Key: "karpenter.sh/unregistered", Effect: corev1.TaintEffectNoExecute}, {Key: "dedicated", Value: "batch", Effect: corev1.TaintEffectNoSchedule}},
		InstanceStorePolicy: ptr.To("RAID0"),
		UserData:            userData,
	}
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if got != string(want) {
		t.Fatalf("user data differs from %s:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func read(t *testing.T, data string) *nodeboot.Config {
	t.Helper()
	c, err := nodeboot.Read(data)
	if err != nil {
		t.Fatalf("nodeadm would not start: %v\n%s", err, data)
	}
	return c
}

func TestAL2023BootsWithTheClusterKubeletLabelsAndTaints(t *testing.T) {
	data, err := bootstrap.AL2023(node(nil))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "al2023.golden", data)
	c := read(t, data)
	cl := c.Spec.Cluster
	if cl.Name != "my-cluster" || cl.APIServerEndpoint != "https://ABCD.gr7.us-east-1.eks.amazonaws.com" || string(cl.CertificateAuthority) != ca || cl.CIDR != "172.20.0.0/16" {
		t.Fatalf("cluster details: %+v", cl)
	}
	var maxPods int
	var dns []string
	var reserved map[string]string
	for key, v := range map[string]any{"maxPods": &maxPods, "clusterDNS": &dns, "systemReserved": &reserved} {
		if ok, err := c.KubeletValue(key, v); !ok || err != nil {
			t.Fatalf("kubelet config %s: set %v, %v", key, ok, err)
		}
	}
	if maxPods != 58 || len(dns) != 1 || dns[0] != "172.20.0.10" || reserved["cpu"] != "100m" {
		t.Fatalf("maxPods %d, clusterDNS %v (the service CIDR's tenth address), systemReserved %v", maxPods, dns, reserved)
	}
	labels, err := c.Labels()
	if err != nil || labels["karpenter.sh/nodepool"] != "spot" || labels["team"] != "data" {
		t.Fatalf("labels %v, %v", labels, err)
	}
	taints, err := c.Taints()
	if err != nil || len(taints) != 2 || taints[0].Key != "karpenter.sh/unregistered" || taints[1].Value != "batch" {
		t.Fatalf("registerWithTaints %v, %v", taints, err)
	}
	if c.Spec.Instance.LocalStorage.Strategy != "RAID0" {
		t.Fatalf("local storage %q", c.Spec.Instance.LocalStorage.Strategy)
	}
}

func TestAL2023KeepsTheUsersDataAsEarlierParts(t *testing.T) {
	script := "#!/bin/bash\necho hello > /etc/motd\n"
	userConfig := "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  cluster:\n    name: not-this-one\n  kubelet:\n    config:\n      shutdownGracePeriod: 30s\n      maxPods: 20\n"
	archive, err := bootstrap.Archive([]bootstrap.Part{{ContentType: "text/x-shellscript", Body: []byte(script)}, {ContentType: bootstrap.NodeConfigType, Body: []byte(userConfig)}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, userData, golden string
		scripts                int
		userConfig             bool
	}{
		{"a shell script", script, "al2023-script.golden", 1, false},
		{"a NodeConfig", userConfig, "al2023-nodeconfig.golden", 0, true},
		{"a MIME archive", archive, "al2023-mime.golden", 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := bootstrap.AL2023(node(&tc.userData))
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.golden, data)
			c := read(t, data)
			if len(c.Scripts) != tc.scripts {
				t.Fatalf("%d scripts, want %d", len(c.Scripts), tc.scripts)
			}
			for _, got := range c.Scripts {
				if got != script {
					t.Fatalf("the user's script changed on the way (line endings?): %q", got)
				}
			}
			if c.Spec.Cluster.Name != "my-cluster" {
				t.Fatalf("the cluster is Backstop's, whatever the user's NodeConfig says: %q", c.Spec.Cluster.Name)
			}
			var grace string
			kept, _ := c.KubeletValue("shutdownGracePeriod", &grace)
			if kept != tc.userConfig {
				t.Fatalf("the user's kubelet setting kept: %v, want %v", kept, tc.userConfig)
			}
			var maxPods int
			if _, err := c.KubeletValue("maxPods", &maxPods); err != nil || maxPods != 58 {
				t.Fatalf("the EC2NodeClass's maxPods wins over the user's: %d", maxPods)
			}
		})
	}
}

func TestAL2023RefusesWhatCouldNotBoot(t *testing.T) {
	n := node(nil)
	n.Cluster.CA = nil
	if _, err := bootstrap.AL2023(n); err == nil || !strings.Contains(err.Error(), "CA") {
		t.Fatalf("without the CA: %v", err)
	}
	wrong := "apiVersion: node.eks.aws/v1beta9\nkind: NodeConfig\n"
	if _, err := bootstrap.AL2023(node(&wrong)); err == nil || !strings.Contains(err.Error(), "spec.userData") {
		t.Fatalf("a NodeConfig nodeadm cannot read: %v", err)
	}
}

func TestAStrictReaderRefusesBrokenUserData(t *testing.T) {
	data, err := bootstrap.AL2023(node(nil))
	if err != nil {
		t.Fatal(err)
	}
	for name, broken := range map[string]string{
		"a field nodeadm does not know": strings.Replace(data, "apiServerEndpoint:", "apiServerEndpont:", 1),
		"no CA":                         strings.Replace(data, "certificateAuthority:", "certificateAuthorityX:", 1),
		"not an archive":                "#!/bin/bash\n/etc/eks/bootstrap.sh my-cluster\n",
	} {
		if _, err := nodeboot.Read(broken); err == nil {
			t.Errorf("%s: read without error", name)
		}
	}
}
