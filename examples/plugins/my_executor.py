# my_executor.py: gradients on P threads of one process, through the server's dispatcher
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

import torch

from dana_ray import (
    EXECUTORS,
    Dispatcher,
    ExecutorSpec,
    MasterLoop,
    Option,
    build_master,
    build_replica,
    integer,
    register_executor,
    run_steps,
)


class Threads:  # the transport: slot k is a thread with its own model replica
    def __init__(self, cfg, num_slots):
        self.num_slots, self.replicas = num_slots, [build_replica(cfg) for _ in range(num_slots)]
        self.pools = [ThreadPoolExecutor(1) for _ in range(num_slots)]

    def send(self, slot, jobs):
        return [self.pools[slot].submit(self.replicas[slot].compute, job) for job in jobs]

    def fetch(self, handle, slot):
        return handle.result()

    def first_ready(self, handles):
        return next(iter(wait(handles, return_when=FIRST_COMPLETED).done))

    def prefetch(self, handles):
        return []  # every result is in this process already

    def is_remote(self, slot):
        return False

    def replace(self, slot, cause):
        raise RuntimeError(f"thread {slot} failed: {cause}")


class ThreadedExecutor(MasterLoop):
    def __init__(self, cfg):
        if cfg.compute.cpu_threads:  # as the local executor does: a kernel's order of sums depends on it
            torch.set_num_threads(cfg.compute.cpu_threads)
        self.transport = Threads(cfg, min(cfg.num_workers, cfg.section("threads").num_threads))
        first = self.transport.replicas[0]
        self.steps_per_epoch, self.num_classes = first.steps_per_epoch, first.data.num_classes
        params, bn_stats = first.model.initial_state()
        self.num_params = params.numel()
        self.master = build_master(cfg, params, bn_stats, first.model.bn_momentum, self.steps_per_epoch)
        if self.master.rule.has_worker_side():
            raise ValueError(f"executor: 'threads' does not keep worker-side state ({cfg.algorithm!r} has some)")
        self.watch(None)
        self.dispatcher = Dispatcher(self.transport, traffic=self.traffic)
        for job in self.master.start():
            self.dispatcher.dispatch(job)

    def run_steps(self, steps):
        run_steps(self.master, self.dispatcher, self.telemetry, steps)

    def evaluate(self):
        return self.transport.replicas[0].evaluate(self.master.rule.params, self.master.bn_stats)

    def worker_side_state(self, next_batches):
        return {}

    def load_worker_side_state(self, state):
        pass

    def close(self, reusable=False):
        for pool in self.transport.pools:
            pool.shutdown()


local = EXECUTORS["local"]
register_executor(
    "threads",
    ExecutorSpec(
        make=lambda cfg, **launch: ThreadedExecutor(cfg),  # launch: name, placement_group, reuse, metrics
        bundles=lambda settings, workers, trial_cpus: [
            {"CPU": settings["cpus_per_actor"] * min(workers, settings["num_threads"])}
        ],
        sized=("cpus_per_actor",),
        arrival=True,
        describe=local.describe,
        in_trial_process=True,
        help="P threads of the trial's process",
        options={"num_threads": Option(2, integer(1), "P: threads computing gradients, a model replica each")},
    ),
)
