package bootstrap_test

import (
	"encoding/base64"
	"regexp"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
	"k8s.io/utils/ptr"

	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws/bootstrap"
	"github.com/backstop-sh/backstop/test/nodeboot"
)

func TestAL2CallsBootstrapShAfterTheUsersScript(t *testing.T) {
	script := "#!/bin/bash\necho hello > /etc/motd\n"
	data, err := bootstrap.AL2(node(&script))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "al2.golden", data)
	parts, isMIME, err := bootstrap.Parts(data)
	if err != nil || !isMIME || len(parts) != 2 {
		t.Fatalf("a MIME archive of the user's script and ours: %v, %v, %d parts", isMIME, err, len(parts))
	}
	if string(parts[0].Body) != script {
		t.Fatalf("the user's script first, unchanged: %q", parts[0].Body)
	}
	call := regexp.MustCompile(`/etc/eks/bootstrap.sh '([^']+)' --apiserver-endpoint '([^']+)' --b64-cluster-ca '([^']+)' --dns-cluster-ip '([^']+)' --use-max-pods false --kubelet-extra-args '([^']+)'`).
		FindStringSubmatch(string(parts[1].Body))
	if call == nil {
		t.Fatalf("no bootstrap.sh call in %s", parts[1].Body)
	}
	ca, err := base64.StdEncoding.DecodeString(call[3])
	if call[1] != "my-cluster" || call[2] != "https://ABCD.gr7.us-east-1.eks.amazonaws.com" || err != nil || string(ca) != string(node(nil).Cluster.CA) || call[4] != "172.20.0.10" {
		t.Fatalf("cluster arguments: %q", call[1:5])
	}
	for _, want := range []string{`--max-pods=58`, `--node-labels="karpenter.sh/nodepool=spot,team=data"`,
		`--register-with-taints="karpenter.sh/unregistered:NoExecute,dedicated=batch:NoSchedule"`, `--eviction-hard="memory.available<5%"`, `--system-reserved="cpu=100m"`} {
		if !strings.Contains(call[5], want) {
			t.Errorf("kubelet extra args lack %s: %s", want, call[5])
		}
	}
	nodeConfig := "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\n"
	if _, err := bootstrap.AL2(node(&nodeConfig)); err == nil || !strings.Contains(err.Error(), "spec.userData") {
		t.Fatalf("a NodeConfig on AL2: %v", err)
	}
}

func TestAL2UserDataBootsAsBootstrapShReadsIt(t *testing.T) {
	script := "#!/bin/bash\necho \"$HOME\" > /etc/motd\n"
	data, err := bootstrap.AL2(node(&script))
	if err != nil {
		t.Fatal(err)
	}
	boot, err := nodeboot.ReadAL2(data)
	if err != nil {
		t.Fatal(err)
	}
	c := boot.Spec.Cluster
	if c.Name != "my-cluster" || c.APIServerEndpoint != "https://ABCD.gr7.us-east-1.eks.amazonaws.com" || string(c.CertificateAuthority) != string(node(nil).Cluster.CA) {
		t.Fatalf("cluster: %+v", c)
	}
	var maxPods int
	if ok, err := boot.KubeletValue("maxPods", &maxPods); !ok || err != nil || maxPods != 58 {
		t.Fatalf("maxPods 58 from --max-pods: %d, %v", maxPods, err)
	}
	labels, err := boot.Labels()
	if err != nil || labels["team"] != "data" {
		t.Fatalf("labels %v: %v", labels, err)
	}
	taints, err := boot.Taints()
	if err != nil || len(taints) != 2 {
		t.Fatalf("taints %v: %v", taints, err)
	}

	// Without maxPods, bootstrap.sh is left to set the type's ENI limit.
	n := node(nil)
	n.Kubelet.MaxPods = nil
	data, err = bootstrap.AL2(n)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(data, "--use-max-pods") {
		t.Fatalf("bootstrap.sh told not to set max pods, with none given:\n%s", data)
	}
	if boot, err = nodeboot.ReadAL2(data); err != nil {
		t.Fatal(err)
	}
	if _, set := boot.Spec.Kubelet.Config["maxPods"]; set {
		t.Fatalf("maxPods set: %s", boot.Spec.Kubelet.Config["maxPods"].Raw)
	}

	for name, broken := range map[string]string{
		"no bootstrap.sh call":       strings.Replace(data, "/etc/eks/bootstrap.sh", "/etc/eks/bootstrap.bash", 1),
		"no CA":                      regexp.MustCompile(`--b64-cluster-ca '[^']*' `).ReplaceAllString(data, ""),
		"the kubelet has no flag":    strings.Replace(data, "--node-labels=", "--node-label=", 1),
		"a quote is never closed":    strings.Replace(data, "--apiserver-endpoint '", "--apiserver-endpoint \"", 1),
		"called twice":               strings.Replace(data, "/etc/eks/bootstrap.sh", "/etc/eks/bootstrap.sh x --apiserver-endpoint y --b64-cluster-ca eA==\n/etc/eks/bootstrap.sh", 1),
		"max pods 'no'":              strings.Replace(data, "--dns-cluster-ip", "--use-max-pods no --dns-cluster-ip", 1),
		"without the cluster's name": strings.Replace(data, "bootstrap.sh 'my-cluster'", "bootstrap.sh", 1),
	} {
		_, err := nodeboot.ReadAL2(broken)
		if err == nil {
			t.Errorf("%s: read", name)
		}
		t.Logf("%s: %v", name, err)
	}
	// An option written --name=value is a positional word to bootstrap.sh:
	// the first positional word names the cluster.
	glued := strings.Replace(data, "bootstrap.sh 'my-cluster' --apiserver-endpoint '", "bootstrap.sh --apiserver-endpoint='x' 'my-cluster' --apiserver-endpoint '", 1)
	if boot, err = nodeboot.ReadAL2(glued); err != nil || boot.Spec.Cluster.Name != "--apiserver-endpoint=x" {
		t.Fatalf("--name=value: %v, %v", boot, err)
	}
	// --use-max-pods false without --max-pods: the kubelet's own 110.
	unset := strings.Replace(data, "--dns-cluster-ip", "--use-max-pods false --dns-cluster-ip", 1)
	if boot, err = nodeboot.ReadAL2(unset); err != nil {
		t.Fatal(err)
	}
	if ok, err := boot.KubeletValue("maxPods", &maxPods); !ok || err != nil || maxPods != 110 {
		t.Fatalf("maxPods 110: %d, %v", maxPods, err)
	}
}

func TestBottlerocketMergesTheUsersTOMLWithOursWinning(t *testing.T) {
	user := "[settings.kubernetes]\ncluster-name = \"not-this-one\"\nmax-pods = 10\n[settings.host-containers.admin]\nenabled = true\n"
	data, err := bootstrap.Bottlerocket(node(&user))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "bottlerocket.golden", data)
	var got struct {
		Settings struct {
			Kubernetes struct {
				ClusterName string              `toml:"cluster-name"`
				APIServer   string              `toml:"api-server"`
				Certificate string              `toml:"cluster-certificate"`
				DNS         string              `toml:"cluster-dns-ip"`
				MaxPods     int                 `toml:"max-pods"`
				Labels      map[string]string   `toml:"node-labels"`
				Taints      map[string][]string `toml:"node-taints"`
				Reserved    map[string]string   `toml:"system-reserved"`
			} `toml:"kubernetes"`
			HostContainers map[string]map[string]bool `toml:"host-containers"`
		} `toml:"settings"`
	}
	if err := toml.Unmarshal([]byte(data), &got); err != nil {
		t.Fatalf("Bottlerocket could not read its settings: %v\n%s", err, data)
	}
	k := got.Settings.Kubernetes
	ca, _ := base64.StdEncoding.DecodeString(k.Certificate)
	if k.ClusterName != "my-cluster" || k.APIServer != "https://ABCD.gr7.us-east-1.eks.amazonaws.com" || string(ca) != string(node(nil).Cluster.CA) || k.DNS != "172.20.0.10" {
		t.Fatalf("the cluster fields are ours: %+v", k)
	}
	if k.MaxPods != 58 || k.Labels["team"] != "data" || k.Taints["dedicated"][0] != "batch:NoSchedule" || k.Reserved["cpu"] != "100m" {
		t.Fatalf("max pods, labels, taints, reservations: %+v", k)
	}
	if !got.Settings.HostContainers["admin"]["enabled"] {
		t.Fatal("the user's own settings are kept")
	}
	bad := "this is = not [toml"
	if _, err := bootstrap.Bottlerocket(node(&bad)); err == nil || !strings.Contains(err.Error(), "spec.userData") {
		t.Fatalf("user data that is not TOML: %v", err)
	}

	// Read back as the node agent boots a Bottlerocket node.
	boot, err := nodeboot.ReadBottlerocket(data)
	if err != nil {
		t.Fatalf("the node agent cannot boot it: %v", err)
	}
	labels, _ := boot.Labels()
	taints, _ := boot.Taints()
	var maxPods int
	_, _ = boot.KubeletValue("maxPods", &maxPods)
	if boot.Spec.Cluster.Name != "my-cluster" || string(boot.Spec.Cluster.CertificateAuthority) != string(node(nil).Cluster.CA) ||
		labels["team"] != "data" || len(taints) != 2 || maxPods != 58 {
		t.Fatalf("booted with %+v, labels %v, taints %v, max pods %d", boot.Spec.Cluster, labels, taints, maxPods)
	}
	for _, broken := range []string{
		strings.Replace(data, "max-pods", "max-podz", 1), // Bottlerocket refuses a setting it does not know
		strings.Replace(data, "cluster-certificate = '", "cluster-certificate = '%%", 1),
		strings.Replace(data, "['batch:NoSchedule']", "['batch:Sometimes']", 1),
		"[settings.host-containers.admin]\nenabled = true\n",
	} {
		if _, err := nodeboot.ReadBottlerocket(broken); err == nil {
			t.Errorf("a node booted from broken settings:\n%s", broken)
		}
	}
}

func TestWindowsCallsStartEKSBootstrapAfterTheUsersPowerShell(t *testing.T) {
	user := "<powershell>\nWrite-Host hello\n</powershell>"
	data, err := bootstrap.Windows(node(&user))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "windows.golden", data)
	if strings.Count(data, "<powershell>") != 1 || !strings.HasPrefix(data, "<powershell>\nWrite-Host hello\n") {
		t.Fatalf("one PowerShell block, the user's lines first:\n%s", data)
	}
	for _, want := range []string{"-EKSClusterName 'my-cluster'", "-APIServerEndpoint 'https://ABCD.gr7.us-east-1.eks.amazonaws.com'",
		"-DNSClusterIP '172.20.0.10'", "--max-pods=58", `--register-with-taints="karpenter.sh/unregistered:NoExecute,dedicated=batch:NoSchedule"`} {
		if !strings.Contains(data, want) {
			t.Errorf("Start-EKSBootstrap lacks %s", want)
		}
	}
}

func TestCustomUserDataIsLeftAlone(t *testing.T) {
	user := "#!/bin/bash\nmy own bootstrap\n"
	for _, family := range []string{"custom", ""} {
		data, err := bootstrap.For(family, node(&user))
		if err != nil || data != user {
			t.Fatalf("%q: %q, %v", family, data, err)
		}
	}
	n := node(nil)
	n.Kubelet.ClusterDNS = []string{"10.100.0.10"}
	data, err := bootstrap.For("windows2022", n)
	if err != nil || !strings.Contains(data, "-DNSClusterIP '10.100.0.10'") {
		t.Fatalf("spec.kubelet.clusterDNS wins: %v\n%s", err, data)
	}
	_ = ptr.To(1)
}
