"""Triton Python-backend model ``text_encoder``: TEXT (BYTES [1]) -> EMBEDDING (FP32 [384]),
PROBS (FP32 [classes]), LABEL (BYTES [1]).

Inference is numpy. Everything it needs sits in this version directory, written by
``python -m services.decision.training`` (services/decision/training/cascade.py):

* ``encoder.py`` -- a verbatim copy of ``services/decision/training/encoder.py``, the module the
  head was trained with (loaded by file path; its sha256 must be the one in ``head.npz``);
* ``minilm/`` -- all-MiniLM-L6-v2's ``model.safetensors`` and ``tokenizer.json``;
* ``head.npz`` -- ``weights`` [384, classes], ``bias``, ``temperature``, ``familiar_limit``
  and ``meta`` (JSON: the class list, the encoder's sha256).

A text the encoder's vocabulary reads as more word pieces per word than ``familiar_limit``
(what all but 1% of the training texts stay under) gets uniform PROBS: no opinion, as the
English-pretrained encoder makes little of it; the decision service then keeps the router's
answer. Its EMBEDDING is returned as for any text.

Loading fails loudly when a file is missing, the encoder is not the one the head was trained
with, or the class list disagrees with ``config.pbtxt``.
"""

import hashlib
import importlib.util
import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

HERE = os.path.dirname(os.path.abspath(__file__))


def _module(path, name):
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
        head_path = os.path.join(HERE, "head.npz")
        encoder_path = os.path.join(HERE, "encoder.py")
        for path in (head_path, encoder_path, os.path.join(HERE, "minilm")):
            if not os.path.exists(path):
                raise pb_utils.TritonModelException(
                    f"{path} missing: run `python -m services.decision.training`")
        with np.load(head_path, allow_pickle=False) as z:
            self.weights = np.asarray(z["weights"], dtype=np.float32)
            self.bias = np.asarray(z["bias"], dtype=np.float32)
            self.temperature = np.float32(np.asarray(z["temperature"]).reshape(-1)[0])
            # heads trained before the limit existed give every text an opinion
            self.familiar_limit = float(np.asarray(z["familiar_limit"]).reshape(-1)[0]) \
                if "familiar_limit" in z.files else float("inf")
            meta = json.loads(str(np.asarray(z["meta"]).reshape(-1)[0]))
        with open(encoder_path, "rb") as fh:
            encoder_sha = hashlib.sha256(fh.read()).hexdigest()
        if encoder_sha != meta["encoder_sha256"]:
            raise pb_utils.TritonModelException(
                f"encoder.py sha256 {encoder_sha} != {meta['encoder_sha256']} the head was "
                "trained with: retrain (python -m services.decision.training)")
        self.classes = list(meta["classes"])
        configured = config.get("parameters", {}).get("classes", {}).get("string_value", "")
        if configured and configured.split(",") != self.classes:
            raise pb_utils.TritonModelException(
                f"config classes {configured!r} != trained classes {self.classes}")
        self.module = _module(encoder_path, "switchyard_text_encoder")
        self.encoder = self.module.Encoder(os.path.join(HERE, "minilm"))
        self.labels = np.array([c.encode("utf-8") for c in self.classes], dtype=np.object_)
        pb_utils.Logger.log_info(
            f"text_encoder {meta.get('version')} loaded: classes={self.classes} "
            f"T={float(self.temperature):.4f} familiar_limit={self.familiar_limit:.3f} "
            f"encoder={encoder_sha[:12]}")

    def execute(self, requests):
        texts, sizes = [], []
        for request in requests:
            arr = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy()
            batch = [_decode(v) for v in arr.reshape(-1)]
            texts.extend(batch)
            sizes.append(len(batch))
        embeddings = self.encoder.encode(texts)
        # the function the card's metrics were computed with (the encoder module's)
        probs = self.module.head_probabilities(embeddings, self.weights, self.bias,
                                               self.temperature)
        tokenizer = self.encoder.tokenizer
        for row, text in enumerate(texts):
            if tokenizer.pieces_per_word(text) > self.familiar_limit:
                probs[row] = 1.0 / len(self.classes)  # no opinion
        labels = self.labels[probs.argmax(axis=1)] if texts else self.labels[:0]
        responses, start = [], 0
        for n in sizes:
            end = start + n
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("EMBEDDING", np.ascontiguousarray(embeddings[start:end])),
                pb_utils.Tensor("PROBS", np.ascontiguousarray(probs[start:end],
                                                              dtype=np.float32)),
                pb_utils.Tensor("LABEL", labels[start:end].reshape(n, 1))]))
            start = end
        return responses

    def finalize(self):
        self.encoder = self.module = None
