"""The divergence guard: what a non-finite loss, gradient or weight does to a run.

Every genlab model holds one (`self.divergence = DivergenceGuard(on_divergence)`, a line in its constructor).
Under automatic optimization `GenlabModule`'s hooks drive it; a manual-optimization model calls
`remember_buffers` before each update's forward pass and `allows` between backward and `optimizer.step()`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from genlab.errors import GenlabError
from genlab.runtime import foreach_norm

if TYPE_CHECKING:
    from genlab.training.module import GenlabModule

POLICIES = ("stop", "skip")


def optimized_parameters(optimizer: torch.optim.Optimizer) -> list[Tensor]:
    """The parameters an optimizer updates: a list at hand, not a walk over the module tree every update."""
    return [parameter for group in optimizer.param_groups for parameter in group["params"]]


def update_norms(parameters: list[Tensor]) -> tuple[Tensor, Tensor]:
    """(norm of the gradients, norm of the weights) of `parameters`, in one fused pass and without a host sync:
    what the guard checks and the GAN logs, on every update."""
    gradients = [p.grad for p in parameters if p.grad is not None]
    norms = foreach_norm([*gradients, *parameters])
    if len({norm.device for norm in norms}) > 1:  # a model spread over devices: gather the norms on one
        norms = [norm.to(parameters[0].device) for norm in norms]
    grad_norm = torch.linalg.vector_norm(torch.stack(norms[:len(gradients)])) if gradients else torch.zeros(())
    return grad_norm, torch.linalg.vector_norm(torch.stack(norms[len(gradients):]))


class DivergenceGuard:
    """Checks every update before it is applied and acts on the policy.

    Args:
        policy: "stop" saves the last good state as `checkpoints/diverged-iteration_N.ckpt` and ends the run with
            one line naming the iteration and the side; "skip" leaves that update out and counts it
            (`skipped_updates`, logged as `divergence/skipped_updates`). Non-finite weights stop the run even in
            skip mode: skipping updates cannot repair them.
    """

    def __init__(self, policy: str = "stop") -> None:
        if policy not in POLICIES:
            raise GenlabError(f"model.on_divergence must be 'stop' or 'skip', got {policy!r}")
        self.policy: Literal["stop", "skip"] = policy  # type: ignore[assignment]
        self.skipped_updates = 0
        self.buffer_list: list[Tensor] | None = None  # the model's buffers, found once per stage
        self.good_buffers: list[Tensor] | None = None
        self.loss: Tensor | None = None  # the loss of the update under way (automatic optimization)

    def new_stage(self) -> None:
        """Find the buffers again at the next update: modules may have been replaced since the last stage."""
        self.buffer_list = self.good_buffers = None

    def remember_buffers(self, module: torch.nn.Module) -> None:
        """Copy the buffers (BatchNorm running statistics) before a forward pass changes them in place.

        A non-finite forward pass spoils them before any check can run; a skipped update puts the copies back,
        so it leaves no trace and a diagnostic checkpoint holds the last good statistics. Models without
        buffers pay nothing.
        """
        if self.buffer_list is None:
            self.buffer_list = list(module.buffers())
        self.good_buffers = [buffer.detach().clone() for buffer in self.buffer_list] if self.buffer_list else None

    def restore_buffers(self) -> None:
        if self.good_buffers is not None and self.buffer_list is not None:
            with torch.no_grad():
                for buffer, good in zip(self.buffer_list, self.good_buffers):
                    buffer.copy_(good)

    def allows(self, module: GenlabModule, side: str, loss: Tensor | None, parameters: Iterable[Tensor],
               norms: tuple[Tensor, Tensor] | None = None) -> bool:
        """Whether an update of `parameters` may go ahead: loss, gradient norm and weight norm all finite.

        Call it after backward and before `optimizer.step()`, so the weights are still the last good ones when
        it stops the run. Costs one fused norm pass (pass `norms` from `update_norms` when they are logged
        anyway) and one host synchronisation (under DDP, one all-reduce) per update; under float16 mixed
        precision gradients are left to the GradScaler, which skips overflowing steps itself.
        """
        grad_norm, weight_norm = norms if norms is not None else update_norms(list(parameters))
        values = {"loss": loss.detach()} if loss is not None else {}
        if getattr(module.trainer.precision_plugin, "scaler", None) is None:
            values["gradients"] = grad_norm
        values["weights"] = weight_norm
        checks = torch.stack([value.float().to(weight_norm.device) for value in values.values()])
        finite = bool(torch.isfinite(checks).all())
        if module.trainer.world_size > 1:
            finite = bool(module.trainer.strategy.reduce_boolean_decision(finite, all=True))
        if finite:
            return True
        self.restore_buffers()
        broken = [name for name, value in values.items() if not bool(torch.isfinite(value).all())]
        if self.policy == "skip" and "weights" not in broken:
            self.skipped_updates += 1
            if self.skipped_updates & (self.skipped_updates - 1) == 0:  # 1, 2, 4, 8, …: a trace, not a flood
                rank_zero_warn(f"iteration {module.iteration}: non-finite {side} update skipped"
                               f" ({self.skipped_updates} so far)")
            return False
        saved = module.save_diverged_state()
        raise GenlabError(self.stop_message(module.iteration, side, broken, saved))

    def check_automatic_update(self, module: GenlabModule, optimizer: torch.optim.Optimizer) -> None:
        """The check under automatic optimization, with the loss `on_before_backward` kept. A skipped update sets
        every gradient to None, which torch optimizers step over (zeros would still move Adam's weights through
        its momentum); returning None from `training_step` instead is refused under DDP."""
        parameters = optimized_parameters(optimizer)
        if not self.allows(module, "model", self.loss, parameters):
            for parameter in parameters:
                parameter.grad = None
        if self.policy == "skip":
            module.log("divergence/skipped_updates", float(self.skipped_updates), on_step=True, on_epoch=False)

    @staticmethod
    def stop_message(iteration: int, side: str, broken: list[str], saved: object) -> str:
        """The one line a stopped run ends with."""
        start = f"training diverged at iteration {iteration}: the {side}"
        if "weights" in broken:  # an earlier update overflowed although its loss and gradients were finite
            return (f"{start} weights are NaN or infinite (the state is saved for inspection in {saved});"
                    " lower the learning rate")
        if not broken:  # under DDP: finite here, not on another process
            what = "update is NaN or infinite on another process"
        else:
            what = " and ".join(broken) + (" is" if broken == ["loss"] else " are") + " NaN or infinite"
        return (f"{start} {what}; the last good state is saved in {saved}; lower the learning rate, or set"
                " model.init_args.on_divergence: skip")
