// Package test holds what Backstop's test suites share: a real control plane
// with the CRDs installed, fixtures, and gomega helpers.
package test

import (
	"fmt"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"os"
	"path/filepath"
	"runtime"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	kruntime "k8s.io/apimachinery/pkg/runtime"

	awsv1 "github.com/backstop-sh/backstop/apis/aws/v1"
	v1 "github.com/backstop-sh/backstop/apis/v1"
)

// Root is the repository's top directory.
var Root = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}()

// Scheme knows the built-in Kubernetes types and Backstop's APIs.
var Scheme = func() *kruntime.Scheme {
	s := kruntime.NewScheme()
	for _, add := range []func(*kruntime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, v1.AddToScheme, awsv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// Codecs decodes manifests with Scheme.
var Codecs = serializer.NewCodecFactory(Scheme)

// Environment is a kube-apiserver and etcd, built by `make tools` into bin/,
// with Backstop's CRDs installed.
type Environment struct {
	envtest.Environment
	Config *rest.Config
	Client client.Client
	stop   func() error
}

// SuiteEnvironment gives a ginkgo suite one control plane: started before its
// first spec, stopped after its last. Use the returned value only inside specs.
func SuiteEnvironment() *Environment {
	env := &Environment{}
	ginkgo.BeforeSuite(func() {
		started, err := Start()
		gomega.Expect(err).NotTo(gomega.HaveOccurred(), "the control plane should start with the CRDs installed")
		env.Config, env.Client, env.stop = started.Config, started.Client, started.Stop
	})
	ginkgo.AfterSuite(func() {
		if env.stop != nil {
			gomega.Expect(env.stop()).To(gomega.Succeed())
		}
	})
	return env
}

// Stop stops the control plane.
func (e *Environment) Stop() error {
	if e.stop != nil {
		return e.stop()
	}
	return e.Environment.Stop()
}

// Start starts the control plane. The binaries come from KUBEBUILDER_ASSETS,
// which the Makefile sets to bin/; it falls back to bin/ for `go test` run by hand.
func Start() (*Environment, error) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join(Root, "bin")
	}
	for _, name := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, name)); err != nil {
			return nil, fmt.Errorf("%s not found in %s: run `make test` (or `make tools`), which builds it from tools/go.mod", name, assets)
		}
	}
	env := &Environment{Environment: envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(Root, "charts", "backstop", "crds")},
		ErrorIfCRDPathMissing: true,
	}}
	cfg, err := env.Environment.Start()
	if err != nil {
		return nil, fmt.Errorf("starting kube-apiserver and etcd from %s: %w", assets, err)
	}
	env.Config = cfg
	env.Client, err = client.New(cfg, client.Options{Scheme: Scheme})
	if err != nil {
		_ = env.Environment.Stop()
		return nil, fmt.Errorf("creating a client: %w", err)
	}
	return env, nil
}
