// Package fallback_test runs Backstop's controllers against a real API server
// and the EC2 simulator, and checks what happens when Spot runs out.
package fallback_test

import (
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/backstop-sh/backstop/test"
	"github.com/backstop-sh/backstop/test/ec2sim"
)

var (
	env = test.SuiteEnvironment()
	sim *ec2sim.Server
	ttl = 3 * time.Second
)

func TestFallback(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Spot-first fallback")
}

// startBackstop runs the controller against a simulator serving ap-northeast-2,
// the zones of the README's NodePools.
func startBackstop() {
	sim = test.StartBackstop(env, ec2sim.Config{Region: "ap-northeast-2", ClusterTag: "my-cluster"}, "--unavailable-offerings-ttl="+ttl.String(), "--launch-timeout=10s")
}
