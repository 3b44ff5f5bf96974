// Package chart_test renders the controller's Helm chart with the real helm
// binary (built into bin/ by `make test`) and checks what a user installs:
// production defaults, settings that the controller really reads, and bad
// values refused at install time with the field named.
package chart_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/backstop-sh/backstop/pkg/operator"
	"github.com/backstop-sh/backstop/test"
)

func TestChart(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Helm chart")
}

var helm = filepath.Join(test.Root, "bin", "helm")

var _ = BeforeSuite(func() {
	_, err := os.Stat(helm)
	Expect(err).NotTo(HaveOccurred(), "bin/helm is missing: `make test` builds it, or `make %s`", helm)
})

// render runs helm template with --set values and returns its objects, or
// helm's error output.
func render(set ...string) ([]*unstructured.Unstructured, string) {
	return renderChart("backstop", set...)
}

// renderChart renders charts/<chart> as render does.
func renderChart(chart string, set ...string) ([]*unstructured.Unstructured, string) {
	args := []string{"template", chart, filepath.Join(test.Root, "charts", chart), "--namespace", "kube-system"}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	var out, errOut bytes.Buffer
	cmd := exec.Command(helm, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return nil, errOut.String()
	}
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(&out, 4096)
	for {
		obj := &unstructured.Unstructured{}
		err := dec.Decode(&obj.Object)
		if err == io.EOF {
			break
		}
		Expect(err).NotTo(HaveOccurred())
		if len(obj.Object) > 0 {
			objs = append(objs, obj)
		}
	}
	return objs, ""
}

func find(objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind {
			return o
		}
	}
	return nil
}

func deployment(objs []*unstructured.Unstructured) *appsv1.Deployment {
	u := find(objs, "Deployment")
	Expect(u).NotTo(BeNil())
	d := &appsv1.Deployment{}
	Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, d)).To(Succeed())
	return d
}

var _ = Describe("the controller chart", func() {
	It("installs with production defaults", func() {
		objs, errOut := render("settings.clusterName=prod")
		Expect(errOut).To(BeEmpty())
		spec := deployment(objs).Spec.Template.Spec
		Expect(spec.PriorityClassName).To(Equal("system-cluster-critical"))
		Expect(spec.Tolerations).To(ContainElement(corev1.Toleration{Key: "CriticalAddonsOnly", Operator: corev1.TolerationOpExists}))
		Expect(spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions).To(
			ContainElement(corev1.NodeSelectorRequirement{Key: "karpenter.sh/nodepool", Operator: corev1.NodeSelectorOpDoesNotExist}),
			"never on a node it manages")
		Expect(spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0].TopologyKey).To(Equal(corev1.LabelHostname))
		Expect(spec.TopologySpreadConstraints[0].TopologyKey).To(Equal(corev1.LabelTopologyZone))
		Expect(*spec.SecurityContext.RunAsNonRoot).To(BeTrue())
		c := spec.Containers[0]
		Expect(*c.SecurityContext.ReadOnlyRootFilesystem).To(BeTrue())
		var memory *corev1.EnvVar
		for i := range c.Env {
			if c.Env[i].Name == "MEMORY_LIMIT" {
				memory = &c.Env[i]
			}
		}
		Expect(memory).NotTo(BeNil())
		Expect(memory.ValueFrom.ResourceFieldRef.Resource).To(Equal("limits.memory"))
		Expect(find(objs, "ServiceMonitor")).To(BeNil(), "off by default: the CRD may not exist")
	})

	It("sets only settings the controller reads, and they parse", func() {
		objs, errOut := render("settings.clusterName=prod", "settings.interruptionQueue=q", "settings.awsRegion=eu-west-1",
			"resources.limits.cpu=2")
		Expect(errOut).To(BeEmpty())
		c := deployment(objs).Spec.Template.Spec.Containers[0]
		// The names the controller asks its environment for.
		known := map[string]bool{}
		_, _ = operator.ParseOptions(nil, func(name string) string { known[name] = true; return "" }, io.Discard)
		env := map[string]string{}
		for _, e := range c.Env {
			switch {
			case e.Name == "GOMAXPROCS":
				// Go's runtime reads it.
				Expect(e.ValueFrom.ResourceFieldRef.Resource).To(Equal("limits.cpu"))
				continue
			case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
				env[e.Name] = "kube-system"
			case e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil:
				env[e.Name] = "1073741824"
			default:
				env[e.Name] = e.Value
			}
			Expect(known).To(HaveKey(e.Name), "the chart sets %s, which the controller does not read", e.Name)
		}
		o, err := operator.ParseOptions(nil, func(name string) string { return env[name] }, io.Discard)
		Expect(err).NotTo(HaveOccurred())
		Expect(o.ClusterName).To(Equal("prod"))
		Expect(o.InterruptionQueue).To(Equal("q"))
		Expect(o.AWSRegion).To(Equal("eu-west-1"))
		Expect(o.EarlyProvisioning).To(BeTrue())
		Expect(o.LeaderElectionNamespace).To(Equal("kube-system"))
		Expect(o.MemoryLimit).To(Equal(int64(1 << 30)))
	})

	It("has a setting for every controller option a user tunes", func() {
		objs, errOut := render("settings.clusterName=prod", "settings.interruptionQueue=q", "settings.awsRegion=eu-west-1",
			"settings.clusterEndpoint=https://api.example", "settings.clusterCABundle=pem", "settings.awsEndpoint=https://ec2.example",
			"settings.batchIdleDuration=2s", "settings.batchMaxDuration=20s", "settings.unavailableOfferingsTTL=5m",
			"settings.registrationTTL=10m", "settings.launchTimeout=4m", "settings.gcInterval=2m", "settings.disruptionInterval=30s",
			"settings.preferencePolicy=Ignore", "settings.returnCooldown=10m", "settings.returnMaxPerInterval=0",
			"settings.returnInterval=10m", "settings.returnMinSaving=0.2", "settings.returnTimeout=30m")
		Expect(errOut).To(BeEmpty())
		rendered := map[string]bool{}
		for _, e := range deployment(objs).Spec.Template.Spec.Containers[0].Env {
			rendered[e.Name] = true
		}
		// What the chart decides for the user, and why.
		decided := map[string]string{
			"KUBECONFIG":                "in a cluster, the service account's token",
			"LEADER_ELECT":              "always on: the chart runs replicas",
			"LEADER_ELECTION_NAMESPACE": "the release's namespace, through SYSTEM_NAMESPACE",
			"LEADER_ELECTION_NAME":      "the one Lease the chart's RBAC grants",
			"MEMORY_LIMIT":              "set from resources.limits.memory, when given",
		}
		_, _ = operator.ParseOptions(nil, func(name string) string {
			if _, ok := decided[name]; !ok && name != "SYSTEM_NAMESPACE" && name != "POD_NAMESPACE" {
				Expect(rendered).To(HaveKey(name), "the controller reads %s, and no chart setting sets it", name)
			}
			return ""
		}, io.Discard)
	})

	It("grants leader election on the controller's own Lease only, no writes to NodePools but status, and to EC2NodeClasses only what their finalizer needs", func() {
		objs, errOut := render("settings.clusterName=prod")
		Expect(errOut).To(BeEmpty())
		o, err := operator.ParseOptions(nil, func(name string) string { return map[string]string{"CLUSTER_NAME": "c"}[name] }, io.Discard)
		Expect(err).NotTo(HaveOccurred())
		role := &rbacv1.Role{}
		Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(find(objs, "Role").Object, role)).To(Succeed())
		for _, r := range role.Rules {
			if len(r.ResourceNames) == 0 {
				Expect(r.Verbs).To(ConsistOf("create"), "only create goes without a name")
			} else {
				Expect(r.ResourceNames).To(ConsistOf(o.LeaderElectionName), "the Lease the controller uses by default")
			}
		}
		cr := &rbacv1.ClusterRole{}
		Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(find(objs, "ClusterRole").Object, cr)).To(Succeed())
		for _, r := range cr.Rules {
			for _, res := range r.Resources {
				switch res {
				case "nodepools":
					Expect(r.Verbs).To(ConsistOf("get", "list", "watch"), "%s are the user's", res)
				case "ec2nodeclasses":
					Expect(r.Verbs).To(ConsistOf("get", "list", "watch", "update", "patch"), "the termination finalizer is added and removed; no create or delete")
				}
			}
		}
	})

	It("renders a ServiceMonitor for the metrics Service when asked", func() {
		objs, errOut := render("settings.clusterName=prod", "serviceMonitor.enabled=true", "serviceMonitor.labels.release=prom",
			"serviceMonitor.interval=15s")
		Expect(errOut).To(BeEmpty())
		sm := find(objs, "ServiceMonitor")
		Expect(sm).NotTo(BeNil())
		Expect(sm.GetLabels()).To(HaveKeyWithValue("release", "prom"))
		svc := find(objs, "Service")
		selector, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
		for k, v := range selector {
			Expect(svc.GetLabels()).To(HaveKeyWithValue(k, v), "the ServiceMonitor selects the metrics Service")
		}
		endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
		Expect(endpoints).To(ConsistOf(HaveKeyWithValue("port", "http-metrics")))
		Expect(endpoints[0]).To(HaveKeyWithValue("interval", "15s"))
	})

	It("takes name overrides, pod labels and annotations, and image pull secrets", func() {
		objs, errOut := render("settings.clusterName=prod", "fullnameOverride=karpenter", "podLabels.team=platform",
			"podAnnotations.note=hi", "imagePullSecrets[0].name=regcred")
		Expect(errOut).To(BeEmpty())
		d := deployment(objs)
		Expect(d.Name).To(Equal("karpenter"))
		Expect(d.Spec.Template.Labels).To(HaveKeyWithValue("team", "platform"))
		Expect(d.Spec.Template.Annotations).To(HaveKeyWithValue("note", "hi"))
		Expect(d.Spec.Template.Spec.ImagePullSecrets).To(ConsistOf(corev1.LocalObjectReference{Name: "regcred"}))
	})

	DescribeTable("refuses bad values at install, naming the field",
		func(want string, set ...string) {
			_, errOut := render(set...)
			Expect(errOut).To(ContainSubstring(want))
		},
		Entry("a log level the controller does not know", "/settings/logLevel", "settings.clusterName=c", "settings.logLevel=warn"),
		Entry("a log format it does not know", "/settings/logFormat", "settings.clusterName=c", "settings.logFormat=text"),
		Entry("an unknown setting", "additional properties 'batchIdle' not allowed", "settings.clusterName=c", "settings.batchIdle=2s"),
		Entry("an unknown top-level value", "additional properties 'replica' not allowed", "settings.clusterName=c", "replica=3"),
		Entry("a duration without a unit", "/settings/leaderElection/leaseDuration", "settings.clusterName=c", "settings.leaderElection.leaseDuration=15"),
		Entry("a QPS of zero", "/settings/kubeClientQPS", "settings.clusterName=c", "settings.kubeClientQPS=0"),
		Entry("a bad pull policy", "/image/pullPolicy", "settings.clusterName=c", "image.pullPolicy=Sometimes"),
		Entry("no cluster name", "settings.clusterName is required"),
	)
})

var _ = Describe("the controller chart's dashboard", func() {
	It("ships Backstop's dashboard as a ConfigMap for the Grafana sidecar when asked, and not by default", func() {
		objs, errOut := render("settings.clusterName=prod")
		Expect(errOut).To(BeEmpty())
		Expect(find(objs, "ConfigMap")).To(BeNil())

		objs, errOut = render("settings.clusterName=prod", "dashboards.enabled=true", "dashboards.namespace=monitoring",
			"dashboards.annotations.grafana_folder=Backstop")
		Expect(errOut).To(BeEmpty())
		cm := find(objs, "ConfigMap")
		Expect(cm).NotTo(BeNil())
		Expect(cm.GetNamespace()).To(Equal("monitoring"))
		Expect(cm.GetLabels()).To(HaveKeyWithValue("grafana_dashboard", "1"))
		Expect(cm.GetAnnotations()).To(HaveKeyWithValue("grafana_folder", "Backstop"))
		data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
		file, err := os.ReadFile(filepath.Join(test.Root, "charts", "backstop", "dashboards", "backstop.json"))
		Expect(err).NotTo(HaveOccurred())
		Expect(data["backstop.json"]).To(MatchJSON(file), "the dashboard as shipped")
	})
})

var _ = Describe("the CRD chart", func() {
	It("renders the controller chart's CRDs, with the annotations asked for", func() {
		objs, errOut := renderChart("backstop-crd", "annotations.helm\\.sh/resource-policy=keep")
		Expect(errOut).To(BeEmpty())
		files, err := filepath.Glob(filepath.Join(test.Root, "charts", "backstop", "crds", "*.yaml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(objs).To(HaveLen(len(files)))
		for _, f := range files {
			data, err := os.ReadFile(f)
			Expect(err).NotTo(HaveOccurred())
			want := &unstructured.Unstructured{}
			Expect(utilyaml.Unmarshal(data, &want.Object)).To(Succeed())
			var got *unstructured.Unstructured
			for _, o := range objs {
				if o.GetName() == want.GetName() {
					got = o
				}
			}
			Expect(got).NotTo(BeNil(), want.GetName())
			gotSpec, err := json.Marshal(got.Object["spec"])
			Expect(err).NotTo(HaveOccurred())
			wantSpec, err := json.Marshal(want.Object["spec"])
			Expect(err).NotTo(HaveOccurred())
			Expect(gotSpec).To(MatchJSON(wantSpec), "%s: the same schema as charts/backstop/crds", want.GetName())
			Expect(got.GetAnnotations()).To(HaveKeyWithValue("helm.sh/resource-policy", "keep"))
		}
	})
})

var _ = Describe("the NodePool chart", func() {
	pools := func(objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
		out := map[string]*unstructured.Unstructured{}
		for _, o := range objs {
			if o.GetKind() == "NodePool" {
				out[o.GetName()] = o
			}
		}
		return out
	}
	requirement := func(pool *unstructured.Unstructured, key string) map[string]any {
		reqs, _, _ := unstructured.NestedSlice(pool.Object, "spec", "template", "spec", "requirements")
		for _, r := range reqs {
			if m := r.(map[string]any); m["key"] == key {
				return m
			}
		}
		return nil
	}

	It("renders a Spot pool, an On-Demand fallback of lower weight and their EC2NodeClass found by the cluster's discovery tag", func() {
		objs, errOut := renderChart("backstop-nodepools", "clusterName=prod")
		Expect(errOut).To(BeEmpty())
		byName := pools(objs)
		Expect(byName).To(HaveLen(2))
		spot, od := byName["spot"], byName["on-demand"]
		Expect(spot.Object["spec"]).To(HaveKeyWithValue("weight", BeNumerically("==", 100)))
		Expect(od.Object["spec"]).To(HaveKeyWithValue("weight", BeNumerically("==", 10)))
		Expect(requirement(spot, "karpenter.sh/capacity-type")).To(HaveKeyWithValue("values", ConsistOf("spot")))
		Expect(requirement(od, "karpenter.sh/capacity-type")).To(HaveKeyWithValue("values", ConsistOf("on-demand")))
		Expect(requirement(spot, "karpenter.k8s.aws/instance-generation")).To(And(HaveKeyWithValue("operator", "Gt"), HaveKeyWithValue("values", ConsistOf("4"))))
		for _, p := range []*unstructured.Unstructured{spot, od} {
			ref, _, _ := unstructured.NestedStringMap(p.Object, "spec", "template", "spec", "nodeClassRef")
			Expect(ref).To(Equal(map[string]string{"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"}))
			limits, _, _ := unstructured.NestedStringMap(p.Object, "spec", "limits")
			Expect(limits).To(HaveKeyWithValue("cpu", "1000"))
		}
		nc := find(objs, "EC2NodeClass")
		Expect(nc).NotTo(BeNil())
		Expect(nc.Object["spec"]).To(HaveKeyWithValue("role", "KarpenterNodeRole-prod"))
		subnets, _, _ := unstructured.NestedSlice(nc.Object, "spec", "subnetSelectorTerms")
		Expect(subnets).To(ConsistOf(map[string]any{"tags": map[string]any{"karpenter.sh/discovery": "prod"}}))
		groups, _, _ := unstructured.NestedSlice(nc.Object, "spec", "securityGroupSelectorTerms")
		Expect(groups).To(Equal(subnets))
	})

	It("takes families, zones, limits, budgets and names from values", func() {
		objs, errOut := renderChart("backstop-nodepools", "clusterName=prod", "requirements.instanceFamilies={c6i,m6i}",
			"requirements.zones={us-east-1a,us-east-1b}", "spot.limits.cpu=64", "onDemand.name=od-fallback",
			"onDemand.disruption.consolidationPolicy=WhenEmpty", "nodeClass.instanceProfile=NodeProfile")
		Expect(errOut).To(BeEmpty())
		byName := pools(objs)
		Expect(byName).To(HaveKey("od-fallback"))
		Expect(requirement(byName["spot"], "karpenter.k8s.aws/instance-family")).To(HaveKeyWithValue("values", ConsistOf("c6i", "m6i")))
		Expect(requirement(byName["od-fallback"], "topology.kubernetes.io/zone")).To(HaveKeyWithValue("values", ConsistOf("us-east-1a", "us-east-1b")))
		limits, _, _ := unstructured.NestedMap(byName["spot"].Object, "spec", "limits")
		Expect(fmt.Sprint(limits["cpu"])).To(Equal("64"))
		policy, _, _ := unstructured.NestedString(byName["od-fallback"].Object, "spec", "disruption", "consolidationPolicy")
		Expect(policy).To(Equal("WhenEmpty"))
		policy, _, _ = unstructured.NestedString(byName["spot"].Object, "spec", "disruption", "consolidationPolicy")
		Expect(policy).To(Equal("WhenEmptyOrUnderutilized"), "the shared disruption block where a pool sets none")
		nc := find(objs, "EC2NodeClass")
		Expect(nc.Object["spec"]).To(HaveKeyWithValue("instanceProfile", "NodeProfile"))
		Expect(nc.Object["spec"]).NotTo(HaveKey("role"))
	})

	DescribeTable("refuses values that would not fall back, naming the fix",
		func(want string, set ...string) {
			_, errOut := renderChart("backstop-nodepools", set...)
			Expect(errOut).To(ContainSubstring(want))
		},
		Entry("no cluster name", "clusterName is required"),
		Entry("On-Demand weighing as much as Spot", "spot.weight (10) must be higher than onDemand.weight (10)", "clusterName=c", "spot.weight=10"),
		Entry("one name for both pools", "give the two NodePools different names", "clusterName=c", "onDemand.name=spot"),
		Entry("an unknown value", "additional properties 'weights' not allowed", "clusterName=c", "spot.weights=3"),
		Entry("an unknown architecture", "/requirements/arch/0", "clusterName=c", "requirements.arch={x86}"),
		Entry("a duration without a unit", "/expireAfter", "clusterName=c", "expireAfter=30"),
	)
})
