"""Triton Python-backend model ``invoice_risk``: FEATURES (FP32 [12]) -> P_AUTO (FP32 [1]).

FEATURES is the raw vector of ``features.invoice_raw_features`` in the order of
``features.INVOICE_FEATURES`` (also ``parameters.feature_names`` in config.pbtxt). Inference is
numpy. Next to this file, built by ``python -m services.decision.training``:

* ``featurize.py`` -- a verbatim copy of ``services/decision/training/features.py`` (the design
  matrix, standardization and calibrated logistic regression used in training), loaded by path;
* ``weights.npz``  -- ``mean``, ``scale``, ``coef``, ``intercept``, ``platt_a``, ``platt_b``, ``meta``.

Loading fails loudly when they are missing or when ``featurize.py`` is not the file the weights
were trained with.
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


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        weights_path = os.path.join(HERE, "weights.npz")
        featurizer_path = os.path.join(HERE, "featurize.py")
        for path in (weights_path, featurizer_path):
            if not os.path.exists(path):
                raise pb_utils.TritonModelException(
                    f"{path} missing: run `python -m services.decision.training`")
        with np.load(weights_path, allow_pickle=False) as z:
            self.params = {k: np.asarray(z[k]) for k in z.files if k != "meta"}
            meta = json.loads(str(np.asarray(z["meta"]).reshape(-1)[0]))
        with open(featurizer_path, "rb") as fh:
            featurizer_sha = hashlib.sha256(fh.read()).hexdigest()
        if featurizer_sha != meta["featurizer_sha256"]:
            raise pb_utils.TritonModelException(
                f"featurize.py sha256 {featurizer_sha} != {meta['featurizer_sha256']} the weights "
                "were trained with: retrain (python -m services.decision.training)")
        self.f = _load_featurizer(featurizer_path, "switchyard_invoice_risk_featurize")
        names = list(meta["feature_names"])
        configured = config.get("parameters", {}).get("feature_names", {}).get("string_value", "")
        if list(self.f.INVOICE_FEATURES) != names or (configured and configured.split(",") != names):
            raise pb_utils.TritonModelException("feature order disagrees between config, weights and featurizer")
        self.dim = len(names)
        pb_utils.Logger.log_info(
            f"invoice_risk {meta.get('version')} loaded: {self.dim} features, featurizer={featurizer_sha[:12]}")

    def execute(self, requests):
        arrays, sizes = [], []
        for request in requests:
            arr = pb_utils.get_input_tensor_by_name(request, "FEATURES").as_numpy()
            arr = arr.reshape(-1, self.dim)
            arrays.append(arr)
            sizes.append(arr.shape[0])
        raw = np.concatenate(arrays, axis=0) if arrays else np.zeros((0, self.dim), np.float32)
        p = self.f.invoice_p_auto(raw, self.params).reshape(-1, 1)
        responses, start = [], 0
        for n in sizes:
            out = np.ascontiguousarray(p[start:start + n], dtype=np.float32)
            start += n
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("P_AUTO", out)]))
        return responses
