"""Triton Python-backend model ``document_router``: TEXT (BYTES [1]) -> PROBS (FP32 [classes]), LABEL (BYTES [1]).

Inference is numpy. Everything the model needs sits next to this file, in the version directory:

* ``featurize.py`` -- a verbatim copy of ``services/decision/training/features.py`` (the module
  training used; loaded here by file path, not through ``sys.path``);
* ``weights.npz``  -- ``weights`` [2**18, classes], ``bias`` [classes], ``temperature`` and
  ``meta`` (JSON with the class list -- one per enabled pack, and ``other`` -- and the sha256 of
  the featurizer the weights were trained with).

Both are built by ``python -m services.decision.training``. Loading fails loudly when they are
missing, when ``featurize.py`` is not the file the weights were trained with, or when the class
list disagrees with ``config.pbtxt``.
"""

import hashlib
import importlib.util
import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

HERE = os.path.dirname(os.path.abspath(__file__))


def _load_featurizer(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _decode(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        version_dir = HERE
        weights_path = os.path.join(version_dir, "weights.npz")
        featurizer_path = os.path.join(version_dir, "featurize.py")
        for path in (weights_path, featurizer_path):
            if not os.path.exists(path):
                raise pb_utils.TritonModelException(
                    f"{path} missing: run `python -m services.decision.training`")
        with np.load(weights_path, allow_pickle=False) as z:
            self.weights = np.asarray(z["weights"], dtype=np.float32)
            self.bias = np.asarray(z["bias"], dtype=np.float32)
            self.temperature = float(np.asarray(z["temperature"]).reshape(-1)[0])
            meta = json.loads(str(np.asarray(z["meta"]).reshape(-1)[0]))
        with open(featurizer_path, "rb") as fh:
            featurizer_sha = hashlib.sha256(fh.read()).hexdigest()
        if featurizer_sha != meta["featurizer_sha256"]:
            raise pb_utils.TritonModelException(
                f"featurize.py sha256 {featurizer_sha} != {meta['featurizer_sha256']} the weights "
                "were trained with: retrain (python -m services.decision.training)")
        self.f = _load_featurizer(featurizer_path, "switchyard_document_router_featurize")
        self.classes = list(meta["classes"])
        configured = config.get("parameters", {}).get("classes", {}).get("string_value", "")
        if configured and configured.split(",") != self.classes:
            raise pb_utils.TritonModelException(
                f"config classes {configured!r} != trained classes {self.classes}")
        if self.weights.shape[1] != len(self.classes):
            raise pb_utils.TritonModelException(
                f"weights have {self.weights.shape[1]} classes, meta lists {len(self.classes)}")
        self.labels = np.array([c.encode("utf-8") for c in self.classes], dtype=np.object_)
        pb_utils.Logger.log_info(
            f"document_router {meta.get('version')} loaded: classes={self.classes} "
            f"T={self.temperature:.4f} featurizer={featurizer_sha[:12]}")

    def execute(self, requests):
        texts, sizes = [], []
        for request in requests:
            arr = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy()
            batch = [_decode(v) for v in arr.reshape(-1)]
            texts.extend(batch)
            sizes.append(len(batch))
        probs = self.f.router_predict_proba(texts, self.weights, self.bias, self.temperature)
        labels = self.labels[probs.argmax(axis=1)] if len(texts) else self.labels[:0]
        responses, start = [], 0
        for n in sizes:
            p = np.ascontiguousarray(probs[start:start + n], dtype=np.float32)
            lab = labels[start:start + n].reshape(n, 1)
            start += n
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("PROBS", p), pb_utils.Tensor("LABEL", lab)]))
        return responses

    def finalize(self):
        self.weights = None
