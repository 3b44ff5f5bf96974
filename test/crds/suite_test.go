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
	env = test.SuiteEnvironment()
	c   client.Client
	ctx = context.Background()
)

func TestCRDs(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "CRDs")
}

var _ = BeforeEach(func() { c = env.Client })
