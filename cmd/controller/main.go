// Command controller is Backstop's node provisioner.
package main

import (
	"fmt"
	"os"

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/backstop-sh/backstop/pkg/operator"
)

func main() {
	opts, err := operator.ParseOptions(os.Args[1:], os.Getenv, os.Stderr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "backstop: %v\n", err)
		os.Exit(2)
	}
	log := operator.NewLogger(opts)
	operator.ApplyMemoryLimit(opts, os.Getenv)
	cfg, err := operator.RESTConfig(opts)
	if err != nil {
		log.Error(err, "cannot reach Kubernetes")
		os.Exit(1)
	}
	ctx := ctrl.SetupSignalHandler()
	clients, err := operator.NewAWS(ctx, opts, log)
	if err != nil {
		log.Error(err, "cannot reach AWS")
		os.Exit(1)
	}
	op, err := operator.New(cfg, opts, log, clients, clock.RealClock{})
	if err != nil {
		log.Error(err, "cannot start")
		os.Exit(1)
	}
	if err := op.Start(ctx); err != nil {
		log.Error(err, "stopped with an error")
		os.Exit(1)
	}
}
