"""OpenVINO inference for a ragcun encoder: the optional CPU fast path for embedding texts.

torch stays the reference path; this one runs the same encoder (backbone, pooling, head and scale, traced
with dynamic batch and length) through OpenVINO's CPU plugin, in float32 (``openvino``: the same vectors to
~1e-6), with bf16 matrix products (``openvino-bf16``: the same graph, run at OpenVINO's bf16 inference precision
on a CPU with AVX512-BF16 or AMX; vectors at cosine ~0.9999 of torch's) or with static int8 quantisation
(``openvino-int8``): NNCF's post-training quantisation
(``nncf.quantize``, ``ModelType.TRANSFORMER``: int8 weights and activations, activation ranges measured on
a calibration set, the operations that quantise badly left in float; the method: Nagel et al., "A White
Paper on Neural Network Quantization", 2021), calibrated on :data:`CALIBRATION_DOCUMENTS` sample *documents*
of the corpus being encoded, so no query of any evaluation is seen.
Measured by ``bench/encode_bench.py`` on a 2-core AVX-512 VNNI CPU: int8 encodes 2.1–2.3× as fast as
sentence-transformers' ``encode``, keeps the untrained MiniLM's SciFact nDCG@10 (+0.4 points) and loses 0.23
points of a fine-tuned model's; bf16 (with AMX) is as fast and keeps both rankings; see docs/serving.md.

An encoder's intermediate representation is the pair ``encoder.xml`` (the graph) and ``encoder.bin`` (the
weights): plain files, read back without pickle. Needs ``pip install 'ragcun[openvino]'``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import tempfile
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args

import numpy as np
from tqdm.auto import tqdm

from ragcun.config import EncoderBackend
from ragcun.errors import RagcunError

ENCODER_BACKENDS: tuple[str, ...] = get_args(EncoderBackend)
IR_XML, IR_BIN = "encoder.xml", "encoder.bin"
CALIBRATION_DOCUMENTS = 300  # NNCF's default subset size; 1,000 did no better on SciFact validation
CALIBRATION_BATCH = 16


def check_backend(backend: str, use_gpu: bool = False) -> str:
    """The backend that ``backend`` names on this machine (``auto`` resolved by :func:`auto_backend`), once it
    is known to run here."""
    if backend not in ENCODER_BACKENDS:
        raise RagcunError(f"unknown encoder backend '{backend}' (choose from {', '.join(ENCODER_BACKENDS)})")
    if backend == "auto":
        return auto_backend(use_gpu)
    if backend != "torch":
        try:
            import openvino  # noqa: F401
            if backend == "openvino-int8":
                import nncf  # noqa: F401
        except ImportError as exc:
            raise RagcunError(f"--encoder_backend {backend} needs OpenVINO: pip install 'ragcun[openvino]' "
                              f"({exc})") from exc
    if backend == "openvino-bf16" and "BF16" not in cpu_capabilities():
        # Without native bf16 OpenVINO would quietly run float32, and the result would be mislabelled.
        raise RagcunError("--encoder_backend openvino-bf16 needs a CPU that computes bf16 (AVX512-BF16 or AMX), "
                          "which this one does not: use openvino")
    return backend


def auto_backend(use_gpu: bool = False) -> str:
    """``openvino-bf16`` where it is installed and the CPU computes bf16 (there it encoded ~2.2x as fast as
    sentence-transformers' encode and kept SciFact's nDCG@10, bench/encode_bench.py), ``torch`` elsewhere and on a GPU."""
    if use_gpu:
        return "torch"
    try:
        import openvino  # noqa: F401
    except ImportError:
        return "torch"
    return "openvino-bf16" if "BF16" in cpu_capabilities() else "torch"


@functools.lru_cache(maxsize=1)
def cpu_capabilities() -> tuple[str, ...]:
    """What OpenVINO's CPU plugin can compute on this machine (``FP32``, ``BF16``, ``INT8``, ...); asked once
    per process, as every model an evaluation converts would otherwise start an OpenVINO core to ask again."""
    import openvino as ov

    return tuple(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


class CalibrationSample:
    """A seeded uniform sample of ``size`` texts from a stream seen once (reservoir sampling, Vitter's
    algorithm R), so a corpus read file by file need not be held; empty texts are skipped."""

    def __init__(self, size: int = CALIBRATION_DOCUMENTS, seed: int = 0):
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.seen = 0
        self.texts: list[str] = []

    def add(self, text: str) -> None:
        if not text.strip():
            return
        self.seen += 1
        if len(self.texts) < self.size:
            self.texts.append(text)
            return
        slot = int(self.rng.integers(self.seen))
        if slot < self.size:
            self.texts[slot] = text


def calibration_sample(texts: Sequence[str], size: int = CALIBRATION_DOCUMENTS, seed: int = 0) -> list[str]:
    """:class:`CalibrationSample` of ``texts`` (all of them when there are at most ``size``)."""
    sample = CalibrationSample(size, seed)
    for text in texts:
        sample.add(text)
    return sample.texts


def convert(model: Any, quantize: bool = False, calibration_texts: Sequence[str] = ()) -> Any:
    """An ``openvino.Model`` of ``model`` (a :class:`ragcun.model.GaussianEmbeddingModel`): inputs
    ``input_ids`` and ``attention_mask`` (batch × length, both dynamic), output the embeddings. With
    ``quantize``, int8 calibrated on ``calibration_texts`` (documents, as :func:`calibration_sample` draws)."""
    import openvino as ov
    import torch

    class Encoder(torch.nn.Module):  # keyword inputs for the backbone, positional ones for the tracer
        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask)

    was_training = model.training
    model.eval()
    example = model.tokenize(["an example document", "and a second, longer example document"])
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns that two shape tests in transformers' attention masking become constants; both hold
        # for every encoder input (the mask is as wide as the sequence; no causal mask in an encoder).
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        ov_model = ov.convert_model(Encoder(model), example_input=(example["input_ids"], example["attention_mask"]),
                                    input=[ov.PartialShape([-1, -1]), ov.PartialShape([-1, -1])])
    model.train(was_training)
    if not quantize:
        return ov_model
    texts = list(calibration_texts)
    if not texts:
        raise RagcunError("int8 quantisation needs calibration documents (none were given)")
    import nncf

    batches = []
    for start in range(0, len(texts), CALIBRATION_BATCH):
        tokens = model.tokenize(texts[start:start + CALIBRATION_BATCH], "document")
        batches.append([tokens["input_ids"].numpy(), tokens["attention_mask"].numpy()])
    # The head's matrix multiply (the graph's last) stays in float: it sets the geometry that L2 ranking reads and
    # costs one d x d product per text (SciFact validation nDCG@10: 0.870 quantised, 0.883 kept, torch 0.878).
    return nncf.quantize(ov_model, nncf.Dataset(batches), model_type=nncf.ModelType.TRANSFORMER,
                         subset_size=len(batches), ignored_scope=nncf.IgnoredScope(names=[head_matmul(ov_model)]))


def head_matmul(ov_model: Any) -> str:
    """The name of the head's matrix multiply: the last MatMul of the graph (pooling and scale follow none)."""
    names = [op.get_friendly_name() for op in ov_model.get_ordered_ops() if op.get_type_name() == "MatMul"]
    if not names:
        raise RagcunError("the converted encoder has no MatMul: not a transformer encoder with a head")
    return names[-1]


def save_ir(ov_model: Any, directory: str | os.PathLike) -> Path:
    """Write ``encoder.xml`` + ``encoder.bin`` into ``directory``; returns the .xml path."""
    import openvino as ov

    path = Path(directory) / IR_XML
    ov.save_model(ov_model, str(path), compress_to_fp16=False)  # fp16 weights would change the vectors
    return path


def ir_bytes(ov_model: Any) -> tuple[bytes, bytes]:
    """The IR as (xml, weights) bytes: how it travels to Ray actors on other machines."""
    with tempfile.TemporaryDirectory() as tmp:
        xml = save_ir(ov_model, tmp)
        return xml.read_bytes(), xml.with_suffix(".bin").read_bytes()


def ir_digest(xml: bytes, weights: bytes) -> str:
    """SHA-256 of an IR's files: the index manifest's checksum."""
    return hashlib.sha256(xml + weights).hexdigest()


def graph_digest(xml: bytes, weights: bytes) -> str:
    """SHA-256 of what an IR computes, the embedding cache's identity of a graph: its files without the node
    and graph names, which OpenVINO numbers from a per-process counter (the same model converted twice in one
    process differs only there)."""
    return ir_digest(re.sub(rb' name="[^"]*"', b"", xml), weights)


def read_ir(xml: bytes, weights: bytes) -> Any:
    import openvino as ov

    return ov.Core().read_model(model=xml, weights=ov.Tensor(np.frombuffer(weights, dtype=np.uint8).copy()))


def saved_ir_bytes(directory: str | os.PathLike) -> tuple[bytes, bytes]:
    """(xml, weights) of the IR that :func:`save_ir` wrote into ``directory``."""
    paths = Path(directory) / IR_XML, Path(directory) / IR_BIN
    for path in paths:
        if not path.is_file():
            raise RagcunError(f"no OpenVINO encoder at {path}")
    return paths[0].read_bytes(), paths[1].read_bytes()


def load_ir(directory: str | os.PathLike) -> Any:
    """The IR saved by :func:`save_ir` in ``directory``."""
    return read_ir(*saved_ir_bytes(directory))


class OpenVINOEncoder:
    """``encode`` as :meth:`ragcun.model.GaussianEmbeddingModel.encode` (same tokenizer, prompts, lengths and
    length-sorted batches), computed by OpenVINO. ``model`` supplies the tokenizer and configuration;
    ``ov_model`` is what :func:`convert` or :func:`load_ir` returned; ``backend`` names it."""

    def __init__(self, model: Any, ov_model: Any, backend: EncoderBackend, num_threads: int | None = None):
        import openvino as ov
        import torch

        self.model = model
        self.backend = backend
        self.config = model.config
        self.ov_model = ov_model
        threads = num_threads or torch.get_num_threads()  # what Ray gave this process, like torch's own path
        # OpenVINO's CPU plugin runs float graphs in bf16 by default where the CPU has AMX/AVX512-BF16, so each
        # backend states its precision: float32 must stay torch's float32, and int8's float parts are what its
        # accuracy was measured with.
        precision = "bf16" if backend == "openvino-bf16" else "f32"
        self._compiled = ov.Core().compile_model(ov_model, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                                 "PERFORMANCE_HINT": "LATENCY",
                                                                 "INFERENCE_PRECISION_HINT": precision})
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()  # one infer request; Serve may call encode from several threads
        self.fingerprint_extra = backend + ":" + graph_digest(*ir_bytes(ov_model))

    @property
    def output_dim(self) -> int:
        return self.model.output_dim

    def state_dict(self) -> dict[str, Any]:
        return self.model.state_dict()

    def save_checkpoint(self, path: str | os.PathLike, **extra: Any) -> Path:
        """The torch model's checkpoint (the reference weights, the tokenizer and the configuration); the
        OpenVINO graph is saved beside it by :func:`save_encoder`."""
        return self.model.save_checkpoint(path, **extra)

    def tokenize(self, texts: Sequence[str], kind: str = "document") -> dict[str, Any]:
        return self.model.tokenize(texts, kind)

    def encode(self, texts: Sequence[str], kind: str = "document", batch_size: int = 32,
               show_progress_bar: bool | None = None) -> np.ndarray:
        texts = list(texts)
        out = np.empty((len(texts), self.output_dim), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        show = len(texts) > 4 * batch_size if show_progress_bar is None else show_progress_bar
        for start in tqdm(range(0, len(texts), batch_size), desc=f"encode {kind}s ({self.backend})", disable=not show,
                          unit="batch"):
            idx = order[start:start + batch_size]
            tokens = self.model.tokenize([texts[i] for i in idx], kind)
            with self._lock:
                out[idx] = self._request.infer([tokens["input_ids"].numpy(), tokens["attention_mask"].numpy()])[0]
        return out

    def encode_queries(self, queries: Sequence[str], batch_size: int = 32, **kw: Any) -> np.ndarray:
        return self.encode(queries, "query", batch_size, **kw)

    def encode_documents(self, documents: Sequence[str], batch_size: int = 32, **kw: Any) -> np.ndarray:
        return self.encode(documents, "document", batch_size, **kw)


# ------------------------------------------------------------------ shipping to actors, index directories
def encoder_payload(encoder: Any) -> dict[str, Any]:
    """What rebuilds ``encoder`` (a torch model or an :class:`OpenVINOEncoder`) in another process: the
    checkpoint payload, the backend, and the OpenVINO graph as bytes."""
    if isinstance(encoder, OpenVINOEncoder):
        return {"checkpoint": encoder.model.checkpoint_payload(), "backend": encoder.backend,
                "ir": ir_bytes(encoder.ov_model)}
    return {"checkpoint": encoder.checkpoint_payload(), "backend": "torch", "ir": None}


def encoder_from_payload(payload: dict[str, Any], num_threads: int | None = None) -> Any:
    from ragcun.model import GaussianEmbeddingModel

    model = GaussianEmbeddingModel.from_payload(payload["checkpoint"])
    if payload["backend"] == "torch":
        return model
    return OpenVINOEncoder(model, read_ir(*payload["ir"]), payload["backend"], num_threads)


def save_encoder(encoder: Any, directory: str | os.PathLike) -> dict[str, Any]:
    """Write an :class:`OpenVINOEncoder`'s graph into ``directory``; returns the manifest entries that
    :func:`load_encoder_backend` reads (``encoder_backend``, and the graph's checksum)."""
    if not isinstance(encoder, OpenVINOEncoder):
        return {"encoder_backend": "torch"}
    save_ir(encoder.ov_model, directory)
    return {"encoder_backend": encoder.backend, "encoder_sha256": ir_digest(*saved_ir_bytes(directory))}


def load_encoder_backend(model: Any, directory: str | os.PathLike, manifest: dict[str, Any]) -> Any:
    """``model`` as the index directory's manifest says its documents were encoded: itself for torch (and
    for a manifest written before backends existed), else the saved OpenVINO graph around it."""
    backend = manifest.get("encoder_backend", "torch")
    if backend == "torch":
        return model
    check_backend(backend)
    xml, weights = saved_ir_bytes(directory)
    if ir_digest(xml, weights) != manifest.get("encoder_sha256"):
        raise RagcunError(f"{Path(directory) / IR_BIN} does not match the checksum in manifest.json")
    return OpenVINOEncoder(model, read_ir(xml, weights), backend)


def with_backend(model: Any, backend: str, calibration_texts: Sequence[str] = (), use_gpu: bool = False) -> Any:
    """``model`` itself for ``torch``; otherwise an :class:`OpenVINOEncoder` of it (int8 calibrated on
    ``calibration_texts``, sampled by :func:`calibration_sample`)."""
    backend = check_backend(backend, use_gpu)
    if backend == "torch":
        return model
    quantize = backend == "openvino-int8"
    ov_model = convert(model, quantize, calibration_sample(calibration_texts) if quantize else ())
    return OpenVINOEncoder(model, ov_model, backend)  # type: ignore[arg-type]
