# my_local_rule.py: asynchronous local SGD, H plain SGD steps per job; the master takes each
# pseudo-gradient Δ = x_0 - x_H damped by the staleness of its start point: θ <- θ - Δ / (1 + τ).
from dana_ray import Option, UpdateRule, descend_, integer, register_rule


def damped_update(params, delta, *, lr, weight_decay):
    """θ <- θ - η (Δ + λθ), η = 1 / (1 + τ)."""
    descend_(params, lr, delta, weight_decay)


class PlainLocalSteps:
    """H steps of SGD from the point the worker was sent, at η of the job; nothing carries over."""

    def __init__(self, local_steps):
        self.local_steps = local_steps

    def run(self, worker, job, point, lr, gradient):
        x = point.clone()
        for h in range(self.local_steps):
            x.sub_(gradient(x, h), alpha=lr)
        return point - x

    def state_dict(self, next_job):
        return {}

    def load_state_dict(self, state):
        pass


@register_rule("damped-local-sgd")
class DampedLocalSGD(UpdateRule):
    options = {"local_steps": Option(4, integer(1), "H: SGD steps per job")}
    single_worker_form, single_worker_options = "sgd", {"local_steps": 1}  # N = 1, H = 1: SGD

    @classmethod
    def make_worker_side(cls, momentum, options):
        return PlainLocalSteps(options["local_steps"])

    def _apply(self, worker, delta, lr, point, delay):
        self._kernel(damped_update)(self.params, delta, lr=1.0 / (1 + delay), weight_decay=self.weight_decay)
