"""One optimizer step, torch's default implementation against the fused one genlab asks for where the config leaves
it unset (`genlab.training.fused`), on this CPU, one thread, six parameter tensors of each size.

    python benchmarks/optimizer_step.py
"""

from __future__ import annotations

import time

import torch

SIZES = [(16, 16), (256, 784), (1024, 1024)]


def microseconds_per_step(fused: bool | None, size: tuple[int, int], steps: int = 500) -> float:
    parameters = [torch.nn.Parameter(torch.randn(*size)) for _ in range(6)]
    for parameter in parameters:
        parameter.grad = torch.randn_like(parameter)
    optimizer = torch.optim.Adam(parameters, fused=fused)
    for _ in range(20):
        optimizer.step()
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    return (time.perf_counter() - start) / steps * 1e6


def main() -> None:
    torch.set_num_threads(1)
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}, 1 thread, Adam")
    for size in SIZES:
        default, fused = microseconds_per_step(None, size), microseconds_per_step(True, size)
        print(f"6 x {size[0]}x{size[1]}: default {default:,.0f} µs, fused {fused:,.0f} µs per step"
              f" ({default / fused:.1f}x)")


if __name__ == "__main__":
    main()
