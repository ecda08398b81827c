"""The same trial on the Ray executor: a ParameterServer actor and 2 Worker actors computing the 4 workers'
gradients, with the local executor's numbers (the same params_sha256). On a GPU cluster, set
``"compute": {"gpus_per_actor": 1}`` and a model and data set of the paper (``resnet20``, ``cifar10``,
``data_dir``).

    python examples/api/run_on_ray.py
"""

import ray

from dana_ray import run

if not ray.is_initialized():
    ray.init()  # joins RAY_ADDRESS or a cluster on this machine, else starts Ray here
config = {
    "algorithm": "dana",
    "num_workers": 4,
    "seed": 0,
    "epochs": 2,
    "compute": {"cpus_per_actor": 0.5},  # a model replica's reservation: half a CPU
    "ray": {"num_actors": 2, "server_cpus": 0.5},
}
on_ray = run(config, executor="ray")
locally = run(config, executor="local")
print(f"on Ray: test error {on_ray['test_error']:.2f}%, params_sha256 {on_ray['params_sha256'][:16]}")
print(f"local:  test error {locally['test_error']:.2f}%, params_sha256 {locally['params_sha256'][:16]}")
