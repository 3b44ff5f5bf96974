package provisioning

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/backstop-sh/backstop/apis/v1"
	"github.com/backstop-sh/backstop/pkg/controllers"
)

// Register runs the provisioner on the manager and feeds it pending pods: a
// pod that becomes provisionable opens or extends a batch window; another
// update of a pod already pending (kube-scheduler rewrites its condition
// again and again) nudges: it asks for a batch within one idle duration,
// however many such updates arrive, and does not hold the window open.
func (p *Provisioner) Register(mgr manager.Manager) error {
	if err := mgr.Add(p); err != nil {
		return err
	}
	provisionable := predicate.NewPredicateFuncs(func(o client.Object) bool {
		pod, ok := o.(*corev1.Pod)
		return ok && p.provisionable(pod)
	})
	// A NodePool that changes (turns Ready, gets a new limit or weight) may
	// take pods it could not before, if any are waiting.
	if err := builder.ControllerManagedBy(mgr).Named("provisioning.nodepools").WithOptions(controllers.Options()).
		For(&v1.NodePool{}).Complete(reconcile.Func(func(context.Context, reconcile.Request) (reconcile.Result, error) {
		if p.waiting() {
			p.batcher.Wake()
		}
		return reconcile.Result{}, nil
	})); err != nil {
		return err
	}
	// A NodeClaim this process created counts in plans until a plan's read
	// of the cache shows it; one deleted before that does not count.
	if err := builder.ControllerManagedBy(mgr).Named("provisioning.nodeclaims").WithOptions(controllers.Options()).
		For(&v1.NodeClaim{}, builder.WithPredicates(predicate.Funcs{
			CreateFunc: func(event.CreateEvent) bool { return false }, UpdateFunc: func(event.UpdateEvent) bool { return false },
			GenericFunc: func(event.GenericEvent) bool { return false },
		})).Complete(reconcile.Func(func(_ context.Context, req reconcile.Request) (reconcile.Result, error) {
		p.deleted(req.Name)
		return reconcile.Result{}, nil
	})); err != nil {
		return err
	}
	return builder.ControllerManagedBy(mgr).
		Named("provisioning.pods").
		WithOptions(controllers.Options()).
		For(&corev1.Pod{}, builder.WithPredicates(provisionable, predicate.Funcs{DeleteFunc: func(event.DeleteEvent) bool { return false }})).
		Complete(reconcile.Func(func(_ context.Context, req reconcile.Request) (reconcile.Result, error) {
			if p.observe(req.NamespacedName) {
				p.Trigger()
			} else {
				p.batcher.Nudge()
			}
			return reconcile.Result{}, nil
		}))
}
