"""Would `torch.compile` make the toy GAN faster? Its networks compiled (inductor, default mode) against eager, in
the plain notebook loop (no Lightning, no genlab), one thread, timed after a warm-up that includes the compile.

    python benchmarks/compile_probe.py
"""
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(1)
from genlab.nets.toy import ToyDiscriminator, ToyGenerator

print("CPU capability", torch.backends.cpu.get_cpu_capability(), "torch", torch.__version__)
def loop(compiled, n=3000):
    torch.manual_seed(0)
    G, D = (ToyGenerator(latent_dim=2, hidden=[16, 16], negative_slope=0.2),
            ToyDiscriminator(hidden=[16, 16, 2], negative_slope=0.2))
    g_opt, d_opt = torch.optim.RMSprop(G.parameters(), lr=1e-3), torch.optim.RMSprop(D.parameters(), lr=1e-3)
    g, d = (torch.compile(G), torch.compile(D)) if compiled else (G, D)
    def step():
        x = torch.rand(128) * 2 - 1; real = torch.stack([x, x * x], 1)
        with torch.no_grad(): fake = g(torch.rand(128, 2) * 2 - 1)
        loss = F.softplus(-d(real)).mean() + F.softplus(d(fake)).mean()
        d_opt.zero_grad(); loss.backward(); d_opt.step()
        gl = F.softplus(-d(g(torch.rand(128, 2) * 2 - 1))).mean()
        g_opt.zero_grad(); gl.backward(); g_opt.step()
    t = time.perf_counter()
    for _ in range(50): step()
    warm = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(n): step()
    return (time.perf_counter() - t) / n, warm
eager, _ = loop(False)
comp, warm = loop(True)
print(f"plain loop eager {eager*1e6:.0f} us/it, compiled networks {comp*1e6:.0f} us/it ({eager/comp:.2f}x),"
      f" compile+warm-up {warm:.1f} s")
