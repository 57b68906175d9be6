"""Process setup for `accelerate`: one process, or several under `accelerate launch`.

CPU processes form a gloo group only when told to use the CPU, so every entry point asks here
instead of building `Accelerator` / `PartialState` itself.
"""

from __future__ import annotations

from promptrec.core.lazy import LazyModule

accelerate = LazyModule("accelerate")
torch = LazyModule("torch")


def cpu_only() -> bool:
    """Whether accelerate must be told to use the CPU (no CUDA here)."""
    # Without CUDA, processes must ask for CPU explicitly to form a gloo group under accelerate launch.
    return not torch.cuda.is_available()


def make_accelerator():
    """The training loop's `Accelerator`."""
    return accelerate.Accelerator(cpu=cpu_only())


def process_state():
    """This process's place in the launch (`PartialState`): index, count, main or not, barriers."""
    return accelerate.PartialState(cpu=cpu_only())


def gather_objects(objects: list, state) -> list:
    """Every process's `objects`, concatenated in process order (the list itself on one process)."""
    return accelerate.utils.gather_object(objects) if state.num_processes > 1 else list(objects)
