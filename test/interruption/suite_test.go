// Package interruption_test checks the interruption queue end to end: the
// controller, running against a real API server, reads the simulator's SQS
// queue, which the simulator fills as EC2 and EventBridge would.
package interruption_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/backstop-sh/backstop/test"
)

var env = test.SuiteEnvironment()

func TestInterruption(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Interruption queue")
}
