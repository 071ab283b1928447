"""Triton Python-backend model ``engagement``: FEATURES (FP32 [8]) -> P_ENGAGED (FP32 [1]).

FEATURES is ``SubjectWindow.vector`` (services/decision/engagement/features.py) in the order of
``FEATURE_NAMES`` (also ``parameters.feature_names`` in config.pbtxt). Next to this file, built by
``python -m services.decision.training`` (or installed by ``switchyard models promote``):
``weights.npz`` -- ``mean``, ``scale``, ``coef``, ``intercept``, ``platt_a``, ``platt_b``,
``meta`` (model, version, feature_names). The expression below is
``services.decision.training.engagement.p_engaged``; tests/models_engagement holds the two to
1e-5 through this server. Loading fails loudly when the weights are missing or the feature order
disagrees with the config.
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

HERE = os.path.dirname(os.path.abspath(__file__))


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        path = os.path.join(HERE, "weights.npz")
        if not os.path.exists(path):
            raise pb_utils.TritonModelException(
                f"{path} missing: run `python -m services.decision.training`")
        with np.load(path, allow_pickle=False) as z:
            self.p = {k: np.asarray(z[k], dtype=np.float64) for k in z.files if k != "meta"}
            meta = json.loads(str(np.asarray(z["meta"]).reshape(-1)[0]))
        names = list(meta["feature_names"])
        configured = config.get("parameters", {}).get("feature_names", {}).get("string_value", "")
        if configured.split(",") != names:
            raise pb_utils.TritonModelException(
                f"feature order disagrees: config {configured!r}, weights {names}")
        self.dim = len(names)
        pb_utils.Logger.log_info(f"engagement {meta.get('version')} loaded from {HERE}")

    def p_engaged(self, x):
        p = self.p
        z = ((x.astype(np.float64) - p["mean"]) / p["scale"]) @ p["coef"] + p["intercept"]
        return 0.5 * (1.0 + np.tanh(0.5 * (p["platt_a"] * z + p["platt_b"])))

    def execute(self, requests):
        arrays, sizes = [], []
        for request in requests:
            arr = pb_utils.get_input_tensor_by_name(request, "FEATURES").as_numpy()
            arr = arr.reshape(-1, self.dim).astype(np.float32)
            arrays.append(arr)
            sizes.append(arr.shape[0])
        x = np.concatenate(arrays, axis=0) if arrays else np.zeros((0, self.dim), np.float32)
        prob = self.p_engaged(x).reshape(-1, 1)
        responses, start = [], 0
        for n in sizes:
            out = np.ascontiguousarray(prob[start:start + n], dtype=np.float32)
            start += n
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("P_ENGAGED", out)]))
        return responses
