"""The generator as a frozen TorchScript graph, for CPU inference only.

`torch.jit.trace` on the first call (the batch dimension stays symbolic, so later batches of
any size reuse the graph), then `torch.jit.freeze`: the weights, spectral normalisation
included, become constants and conv + bias + activation are fused. Under bf16 autocast the
64 px demo generator ran 1.2-1.4x as many faces per second as the eager module on this 2-core
CPU (`experiments/benchmarks/anonymize.py`); in fp32 the outputs equal the eager module's to
float precision (tested). If tracing fails, the eager module is used, with a warning.
Never for training: the frozen graph has no gradients and no parameters to update.
"""

from __future__ import annotations

import threading
import warnings

import torch
from torch import Tensor

from ciagan.nets import Generator


class TracedGenerator:
    """Calls like the `Generator` it wraps (`inpaint` takes either)."""

    def __init__(self, generator: Generator) -> None:
        self.eager = generator.eval()
        self.pixel_range = generator.pixel_range
        self.image_size = generator.image_size
        self.num_identities = generator.num_identities
        self._graph: torch.jit.ScriptModule | None = None
        self._failed = False
        self._lock = threading.Lock()

    def _trace(self, example: tuple[Tensor, Tensor, Tensor]) -> None:
        device = example[0].device.type
        try:
            with (
                warnings.catch_warnings(),
                torch.no_grad(),
                torch.autocast(device, enabled=False),  # an fp32 graph; autocast applies later
            ):
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                # TorchScript is deprecated for torch.compile, which compiles for minutes on a
                # CPU like this one: longer than anonymizing a clip takes
                warnings.simplefilter("ignore", FutureWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                if device == "cpu":  # oneDNN's convolutions are faster on NHWC here
                    self.eager.to(memory_format=torch.channels_last)
                    example = _nhwc(example)
                traced = torch.jit.trace(self.eager, example, check_trace=False)
                self._graph = torch.jit.freeze(traced)
        except Exception as err:  # an op the tracer cannot take: stay eager, say so
            self._failed = True
            warnings.warn(f"CIAGAN generator runs eagerly: tracing failed ({err})", stacklevel=3)

    def __call__(self, condition: Tensor, masked: Tensor, identity: Tensor) -> Tensor:
        if self._graph is None and not self._failed:
            with self._lock:
                if self._graph is None and not self._failed:
                    self._trace((condition, masked, identity))
        if self._graph is None:
            return self.eager(condition, masked, identity)
        return self._graph(*_nhwc((condition, masked, identity)))


def _nhwc(tensors: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """Image batches (4-d) in channels-last memory order; other tensors as they are."""
    return tuple(
        t.contiguous(memory_format=torch.channels_last) if t.ndim == 4 else t for t in tensors
    )
