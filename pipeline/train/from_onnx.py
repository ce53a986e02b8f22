"""Rebuild an ultralytics checkpoint from an ONNX model this project exported, to fine-tune it.

The repository ships the default model as ONNX only (its PyTorch checkpoint is a training run's
by-product, left under `var/`), so the next training run must be able to start from the ONNX.
No library does this: onnx2torch gives a generic graph, not the ultralytics model that `YOLO.train`
needs. It is exact for ultralytics exports, whose initializers keep the PyTorch parameter names:
the export fuses each Conv+BatchNorm into one convolution with a bias, so each such BatchNorm is
set to the identity plus that bias (weight 1, mean 0, variance 1 - eps), which computes the fused
convolution to float precision and trains on from there.
"""

from __future__ import annotations

import ast
from pathlib import Path


def checkpoint_from_onnx(onnx_path: Path, out: Path, *, base: str = "yolov8n.yaml") -> Path:
    """Writes ``out`` (an ultralytics .pt) holding ``base`` with the weights of ``onnx_path``;
    ValueError names what does not fit."""
    import onnx
    import torch
    from onnx import numpy_helper
    from ultralytics.nn.tasks import DetectionModel

    model_proto = onnx.load(str(onnx_path))
    metadata = {p.key: p.value for p in model_proto.metadata_props}
    if "names" not in metadata:
        raise ValueError(f"{onnx_path}: not an ultralytics export (no class names in its metadata)")
    names = ast.literal_eval(metadata["names"])
    tensors = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in model_proto.graph.initializer}

    model = DetectionModel(base, nc=len(names), verbose=False)
    model.names = names
    modules = dict(model.named_modules())
    loaded = set()
    # Each convolution's weight keeps its parameter's name; its bias may not (the graph simplifier
    # merges equal constants, e.g. two heads' biases still at their initial value), so the bias is
    # found as the Conv node's third input.
    for node in (n for n in model_proto.graph.node if n.op_type == "Conv"):
        weight_name = node.input[1]
        owner = weight_name.removesuffix(".weight")
        module = modules.get(owner)
        if module is None or not hasattr(module, "weight"):
            raise ValueError(f"{onnx_path}: its convolution {weight_name} is not a layer of {base}; give --base")
        parent = modules.get(owner.rpartition(".")[0])
        fused_batchnorm = getattr(parent, "bn", None) if owner.endswith(".conv") else None
        bias_target = fused_batchnorm if fused_batchnorm is not None else module
        _copy(module.weight, tensors[weight_name], f"{owner}.weight", onnx_path, base)
        if len(node.input) > 2 and node.input[2]:
            _copy(bias_target.bias, tensors[node.input[2]], f"{owner}.bias", onnx_path, base)
        if fused_batchnorm is not None:
            with torch.no_grad():
                fused_batchnorm.weight.fill_(1.0)
                fused_batchnorm.running_mean.zero_()
                fused_batchnorm.running_var.fill_(1.0 - fused_batchnorm.eps)
        loaded.add(owner)
    convolutions = {name for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    missing = sorted(convolutions - loaded)
    if missing:
        raise ValueError(f"{onnx_path}: has no weights for {missing[0]} of {base} "
                         f"(and {len(missing) - 1} more); give --base")
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model, "train_args": {}, "epoch": -1, "date": None}, out)
    return out


def _copy(param, value, name: str, onnx_path: Path, base: str) -> None:
    import torch

    if param is None or tuple(param.shape) != tuple(value.shape):
        shape = list(param.shape) if param is not None else "no such parameter"
        raise ValueError(f"{onnx_path}: {name} {list(value.shape)} does not fit {base} ({shape}); give --base")
    with torch.no_grad():
        param.copy_(value)
