# my_rule.py: ASGD with momentum whose gradients are damped by their delay, g / max(1, τ)^p
# (after Zhang et al. 2016, "Staleness-aware async-SGD").
from dana_ray import Option, UpdateRule, number, register_rule, scaled_add


def staleness_aware_update(params, velocity, grad, *, lr, momentum, damping, weight_decay):
    """v <- γv + g/max(1, τ)^p + λθ;  θ <- θ - ηv  (λθ: weight decay at the master, else 0)."""
    velocity.mul_(momentum)
    scaled_add(velocity, damping, grad)
    scaled_add(velocity, weight_decay, params)
    scaled_add(params, -lr, velocity)


@register_rule("staleness-aware")
class StalenessAware(UpdateRule):
    single_worker_form = "momentum"  # with one worker every delay is 0: momentum SGD (a law the tests check;
    # sgd, momentum or nesterov; leave it out for a rule that is none of them)
    options = {"power": Option(1.0, number(0.0), "p: how fast a gradient's weight falls with its delay")}
    _tensor_state = ("params", "velocity")

    def _allocate(self):
        self.velocity = self._zeros()

    def _apply(self, worker, grad, lr, point, delay):
        self._kernel(staleness_aware_update)(
            self.params,
            self.velocity,
            grad,
            lr=lr,
            momentum=self.momentum,
            damping=1.0 / max(1, delay) ** self.option_values["power"],
            weight_decay=self.weight_decay,
        )
