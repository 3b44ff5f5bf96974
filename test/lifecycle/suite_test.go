// Package lifecycle_test checks a NodeClaim's life after launch — registration,
// initialization, drain and termination, garbage collection — with the
// controller running against a real API server and the EC2 simulator.
package lifecycle_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/backstop-sh/backstop/test"
)

var env = test.SuiteEnvironment()

func TestLifecycle(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "NodeClaim lifecycle")
}
