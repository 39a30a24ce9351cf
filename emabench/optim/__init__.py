"""emabench's optimizers that torch does not ship: torch only, usable in any training loop.

    from emabench.optim import RMSpropNesterov
    optimizer = RMSpropNesterov(model.parameters(), lr=1e-2, alpha=0.99, momentum=0.9, eps=1e-6)

- ``RMSpropNesterov``: seed 004's RMSProp with Nesterov momentum (δ inside the square root), a
  ``torch.optim.Optimizer``; the parameters hold the look-ahead point ``θ + α·v``, where the gradient is taken.
- ``rmsprop_nesterov_step``: the same step as a function of the parameters, gradients and state, with ``lr`` and
  ``weight_decay`` per replica (a 1-D tensor over dim 0 of stacked parameters) or per element.
"""

from emabench.optim.rmsprop_nesterov import RMSpropNesterov, rmsprop_nesterov_step

__all__ = ["RMSpropNesterov", "rmsprop_nesterov_step"]
