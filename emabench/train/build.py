"""Config → the pieces a trainer runs: the (stacked) model, the optimizer stepper and the learning-rate schedule.

What replicas of one stack share and what may differ per replica is decided here (:func:`stack_key`): anything not
listed in :data:`PER_REPLICA` must be equal for configs to train as one stacked model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from emabench.config import OPTIMIZER_ARGUMENTS, Config
from emabench.config.train_specs import is_class_path
from emabench.errors import ConfigError
from emabench.stack import models
from emabench.tasks.data import make_dataset
from emabench.tasks.registry import get_task
from emabench.tasks.user import check_on_batch, task_of
from emabench.train import classes, custom
from emabench.train.schedules import Schedule
from emabench.train.stepper import ReplicaStepper

# Dotted config keys that may differ between the replicas of one stack (everything else is shared).
PER_REPLICA = (
    "name",
    "seed",
    "model.dropout",
    "ema.beta",
    "train.optimizer.lr",
    "train.optimizer.weight_decay",
    "train.grad_clip_norm",
    "train.label_smoothing",
    "train.teacher.weight",
    "train.diverged_above",
    "train.max_epochs",  # unless a learning-rate schedule is sized by it (see stack_key)
    "train.scheduler",
    "train.early_stopping",
)


def resolve_device(requested: str) -> torch.device:
    """``auto`` → CUDA when available (as the seed script), else CPU; ``cuda`` without CUDA is an error."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' was requested but CUDA is not available here (allowed: auto, cpu)")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def runnable_device(config: Config) -> torch.device:
    """The device ``config`` trains on, after checking it can: ``device: cuda`` needs CUDA, ``precision: fp16`` (a
    gradient scaler's float16) needs CUDA too (on a CPU, ``bf16`` is the reduced precision autocast offers)."""
    device = resolve_device(config.device)
    if config.train.precision == "fp16" and device.type != "cuda":
        raise ConfigError(
            f"train.precision: 'fp16' needs CUDA and this run trains on {device.type} "
            "(allowed here: fp32, bf16; bf16 autocast on a CPU without bf16 hardware is slower than fp32)"
        )
    return device


def stack_key(config: Config) -> str:
    """What replicas must share to train as one stacked model. A custom model or fp16 never stacks: its key is the
    whole config (every per-run setting included), so each of its runs is a unit of its own."""
    raw = config.to_dict()
    vmapped = config.model.name == "custom" and config.model.stack == "vmap"
    if (config.model.name == "custom" and not vmapped) or config.train.precision == "fp16":
        return json.dumps(raw, sort_keys=True, default=str)  # a user's module is not stacked; fp16's scaler couples
    for key in PER_REPLICA:
        *parents, last = key.split(".")
        node = raw
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
        if key == "train.scheduler" and isinstance(node, dict):  # plateau settings differ; whether there is one not
            node["scheduler"] = config.train.scheduler.name
    if config.train.lr_schedule.name != "constant" or config.train.swa_lr is not None:
        raw["max_epochs"] = config.train.max_epochs  # the schedule's length
    shared = classes.class_settings(config)  # a class sets the learning rate: one for the whole stack
    if shared:
        raw["class_settings"] = shared
    return json.dumps(raw, sort_keys=True, default=str)


def steps_per_epoch(n_train: int, batch_size: int, drop_last: bool = False) -> int:
    """Optimizer steps of an epoch: the last partial batch kept (``data.drop_last`` of a Dataset: dropped)."""
    return n_train // batch_size if drop_last and n_train >= batch_size else math.ceil(n_train / batch_size)


def epoch_steps(config: Config, n_train: int) -> int:
    """:func:`steps_per_epoch` of ``config``."""
    return steps_per_epoch(n_train, config.train.batch_size, getattr(config.data, "drop_last", False))


def lr_schedule(config: Config, n_train: int) -> tuple[Schedule | classes.TabulatedSchedule, str]:
    """The shared schedule and its unit (``epoch`` or ``step``), sized to ``max_epochs`` (a scheduler class's:
    tabulated, :mod:`.classes`)."""
    spec = config.train.lr_schedule
    total = config.train.max_epochs
    if spec.per == "step":
        total *= epoch_steps(config, n_train)
    if is_class_path(spec.name):
        return classes.tabulated_schedule(config, total), spec.per
    if spec.warmup >= total:  # per step, the run's length is known only with the data (per epoch: validated)
        raise ConfigError(
            f"train.lr_schedule.warmup: {spec.warmup} is not below the run's {total} {spec.per}s "
            f"(train.max_epochs {config.train.max_epochs}, {total // config.train.max_epochs} {spec.per}s each epoch)"
        )
    schedule = Schedule(
        spec.name,
        total=total,
        final=spec.final,
        power=spec.power,
        step_size=spec.step_size,
        gamma=spec.gamma,
        warmup=spec.warmup,
        warmup_start=spec.warmup_start,
    )
    return schedule, spec.per


class TrainingSizes:
    """Training-set sizes by data spec, each data set loaded once: what planning needs of the data (a run's steps
    are known only with it)."""

    def __init__(self) -> None:
        self._sizes: dict[str, tuple[int, int, tuple[int, ...], int, torch.Tensor]] = {}

    def _loaded(self, config: Config) -> tuple[int, int, tuple[int, ...], int, torch.Tensor]:
        key = json.dumps([config.task, config.data.model_dump(mode="json")], sort_keys=True)
        if key not in self._sizes:
            data = make_dataset(config.data, config.task)
            tensors = [
                t
                for t in (data.x_train, data.y_train, data.x_val, data.y_val, data.x_test, data.y_test)
                if t is not None
            ]
            outputs = get_task(config.task).outputs(data.n_classes)
            nbytes = sum(t.numel() * t.element_size() for t in tensors)
            targets = (data.y_val[0] if data.per_replica else data.y_val)[:CHECK_BATCH].clone()  # check_on_batch's
            self._sizes[key] = (data.n_train, nbytes, data.sample_shape, outputs, targets)
        return self._sizes[key]

    def n_train(self, config: Config) -> int:
        return self._loaded(config)[0]

    def split_bytes(self, config: Config) -> int:
        """The bytes of one split's tensors: what each replica holds of its own under ``split: per_seed``."""
        return self._loaded(config)[1]

    def vmap_problem(self, config: Config) -> str | None:
        """Why a custom model with ``stack: vmap`` cannot be stacked (:func:`emabench.train.custom.vmap_problem`)."""
        _, _, shape, outputs, _ = self._loaded(config)
        return custom.vmap_problem(config, shape, outputs)

    def steps_per_epoch(self, config: Config) -> int:
        return epoch_steps(config, self.n_train(config))

    def check_task(self, config: Config) -> None:
        """The user's loss and metrics of ``config``, imported and called on one batch
        (:func:`emabench.tasks.user.check_on_batch`)."""
        _, _, _, outputs, targets = self._loaded(config)
        check_on_batch(task_of(config), outputs, targets)


CHECK_BATCH = 8  # validation targets the user's loss and metrics are tried on


def check_task_functions(configs: Sequence[Config], sizes: TrainingSizes | None = None) -> None:
    """Every user's loss and metrics (``loss:``, ``metrics:``) imported and tried on one batch, so that a bad import
    path or a function returning the wrong thing is one line before anything is written."""
    sizes = sizes or TrainingSizes()
    checked = set()
    for config in configs:
        key = json.dumps([config.task, config.loss, config.data.model_dump(mode="json"), config.to_dict()["metrics"]])
        if (config.loss is not None or config.metrics) and key not in checked:
            checked.add(key)
            sizes.check_task(config)


def check_step_warmups(configs: Sequence[Config], sizes: TrainingSizes | None = None) -> None:
    """A warm-up counted in steps must be shorter than the run, whose steps are known only with the data: loaded
    here (once per data spec) for the configs that have one, so a refusal comes before anything is written."""
    sizes = sizes or TrainingSizes()
    for config in configs:
        spec = config.train.lr_schedule
        if spec.per == "step" and spec.warmup > 0:
            lr_schedule(config, sizes.n_train(config))


def warmup_ceiling(spec: Any, steps: int) -> float:
    """The largest decay a warm-up EMA (the ``ema`` section, or an averager of kind ``ema``) reaches by optimizer
    step ``steps``, before its β caps it: ``max(min_value, 1 − (1 + e/inv_gamma)^−power)`` at
    ``e = steps − update_after_step − 1`` (the schedule only grows)."""
    e = steps - spec.update_after_step - 1
    decay = 0.0 if e <= 0 else 1.0 - (1.0 + e / spec.inv_gamma) ** -spec.power
    return max(decay, spec.min_value)


UNREACHED = "unreached"  # a warm-up EMA's β that its decay never reaches in the run (see run_identity)


def beta_free(config: Config) -> dict[str, Any]:
    """``config`` as a dict with every warm-up EMA's β removed: configs equal here differ at most in βs."""
    raw = config.to_dict()
    raw["ema"].pop("beta", None)
    for spec in raw.get("averagers", {}).values():
        if spec.get("kind") == "ema":
            spec.pop("beta", None)
    return raw


def run_identity(config: Config, steps_per_epoch: int) -> str:
    """What decides a run's history, as text: its config, with every warm-up EMA's β that its decay never reaches
    within ``max_epochs`` written as :data:`UNREACHED` — every such β gives the same decays, so the same run."""
    raw = config.to_dict()
    steps = config.train.max_epochs * steps_per_epoch
    specs = [("ema", config.ema, raw["ema"])] + [
        (name, spec, raw["averagers"][name])
        for name, spec in config.averagers.items()
        if getattr(spec, "kind", None) == "ema" and spec.beta is not None
    ]
    for _, spec, out in specs:
        if warmup_ceiling(spec, steps) < spec.beta:
            out["beta"] = UNREACHED
    return json.dumps(raw, sort_keys=True, default=str)


def build_model(
    configs: Sequence[Config], sample_shape: Sequence[int], outputs: int, generators: Sequence[torch.Generator]
) -> nn.Module:
    """The stacked network of ``model`` (one replica per config) with every replica initialised from its generator,
    or the user's module (``custom``) as a stack of one."""
    spec, replicas = configs[0].model, len(configs)
    if spec.name == "custom":
        return custom.build(configs, sample_shape, outputs)
    dropout = any(c.model.dropout > 0 for c in configs)  # masks of 1 for replicas with p = 0
    if spec.name == "mlp":
        net = models.mlp(
            replicas,
            sample_shape,
            outputs,
            spec.hidden_sizes,
            activation=spec.activation,
            norm=spec.norm,
            dropout=dropout,
        )
    else:
        net = models.lenet(
            replicas,
            sample_shape,
            outputs,
            channels=spec.channels,
            fc_sizes=spec.fc_sizes,
            activation=spec.activation,
            fc_activation=spec.fc_activation,
            dropout=dropout,
        )
    models.init_parameters(net, generators, spec.init)
    return net


def build_stepper(configs: Sequence[Config], model: nn.Module) -> ReplicaStepper:
    """torch's optimizer of ``train.optimizer.name`` over the model's parameters, lr and weight decay per replica."""
    spec = configs[0].train.optimizer.resolved()
    params = [p for p in model.parameters() if p.requires_grad]
    if spec.is_class:  # the class as a user's loop would build it (lr and weight decay shared by the stack)
        options, prebuilt = {}, classes.build_optimizer(configs[0], params)
    else:
        options = {k: getattr(spec, k) for k in OPTIMIZER_ARGUMENTS[spec.name] if getattr(spec, k) is not None}
        prebuilt = None
    if "betas" in options:
        options["betas"] = tuple(options["betas"])
    clips = [c.train.grad_clip_norm for c in configs]
    return ReplicaStepper(
        spec.name,
        params,
        options,
        weight_decays=[c.train.optimizer.resolved().weight_decay for c in configs],
        clip_norms=None if all(c is None for c in clips) else [math.inf if c is None else c for c in clips],
        stacked=not isinstance(model, custom.SingleModel),
        scaled=configs[0].train.precision == "fp16",
        optimizer=prebuilt,
    )
