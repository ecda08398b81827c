"""One trial, simulated in this process (the local executor): DANA with 4 workers on the embedded digits.

python examples/api/run_one_trial.py
"""

from dana_ray import run

result = run(
    {"algorithm": "dana", "num_workers": 4, "schedule": "round-robin", "seed": 0, "epochs": 2},
    executor="local",
    callback=lambda row: print(f"epoch {row['epoch']}: test error {row['test_error']:.2f}%"),  # one dict per epoch
)
print(
    f"test error {result['test_error']:.2f}%, mean delay {result['mean_delay']:.2f}, "
    f"simulated time {result['sim_time']:.0f}, params_sha256 {result['params_sha256'][:16]}"
)
