package crds_test

import (
	"context"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/backstop-sh/backstop/test"
)

var (
	env *test.Environment
	c   client.Client
	ctx = context.Background()
)

func TestCRDs(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "CRDs")
}

var _ = BeforeSuite(func() {
	var err error
	env, err = test.Start()
	Expect(err).NotTo(HaveOccurred(), "the control plane should start with the CRDs installed")
	c = env.Client
})

var _ = AfterSuite(func() {
	if env != nil {
		Expect(env.Stop()).To(Succeed())
	}
})
