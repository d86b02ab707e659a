#!/usr/bin/env python3
"""Document encoding in one process: sentence-transformers' default ``encode`` (torch, float32) vs ragcun's
``encode`` and the CPU fast-path candidates, on the same model, texts and threads, rounds alternating.
A benchmark, not a test.

Candidates (each must keep the ranking to become a default; ``--ndcg NAME…`` measures that on SciFact test):
- ``ragcun``: ``GaussianEmbeddingModel.encode`` (length-sorted batches trimmed to their longest row);
- ``int8_tensor`` / ``int8_channel``: torch dynamic int8 quantisation of the encoder's linear layers
  (per-tensor or per-channel weight scales; activations quantised on the fly; AVX512-VNNI kernels);
- ``torch_bf16``: ragcun's ``encode`` under torch's bf16 autocast (not a backend; for comparison);
- ``openvino`` / ``openvino-bf16`` / ``openvino-int8``: ``--encoder_backend`` of build_index, evaluate and Serve
  (:mod:`ragcun.openvino_encoder`): OpenVINO float32, the same graph at bf16 precision (a CPU with
  AVX512-BF16 or AMX), and NNCF static int8 calibrated on 300 sample documents of the corpus (never a query);
- ``onnx``: the encoder exported to ONNX and run by ONNX Runtime (``--onnx``; needs ``onnx`` and
  ``onnxruntime``, not installed by default).

Columns: documents/s (median over rounds), speed relative to sentence-transformers (target >= 1.5), and the
agreement of each candidate's vectors with float32 torch (mean and minimum cosine). Writes JSON.

    python bench/encode_bench.py --num_documents 600 --rounds 2 [--ndcg ragcun openvino-bf16] [--onnx]
        [--model_path CHECKPOINT --distance l2]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ragcun.config import DEFAULT_BASE_MODEL  # noqa: E402
from ragcun.model import load_encoder, resolve_model_path  # noqa: E402
from ragcun.openvino_encoder import with_backend  # noqa: E402


def quantized(model, per_channel: bool):
    """A copy whose backbone's linear layers run in dynamic int8 (the head stays float32)."""
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
    q = copy.deepcopy(model)
    q.backbone = quantize_dynamic(q.backbone, {torch.nn.Linear: qconfig}, dtype=torch.qint8)
    return q


def onnx_encoder(model, workdir: Path):
    """encode(texts) through ONNX Runtime, with ragcun's tokenizer, sorting and head."""
    import onnxruntime as ort

    class Wrapped(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            return self.m(input_ids=input_ids, attention_mask=attention_mask)

    sample = model.tokenize(["a sample document", "another one"])
    path = workdir / "encoder.onnx"
    torch.onnx.export(Wrapped(model.eval()), (sample["input_ids"], sample["attention_mask"]), str(path),
                      dynamo=False, input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                      dynamic_axes={"input_ids": {0: "b", 1: "l"}, "attention_mask": {0: "b", 1: "l"},
                                    "embedding": {0: "b"}}, opset_version=17)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def encode(texts: list[str], batch_size: int = 32) -> np.ndarray:
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), model.output_dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            batch = model.tokenize([texts[i] for i in idx])
            out[idx] = session.run(None, {"input_ids": batch["input_ids"].numpy(),
                                          "attention_mask": batch["attention_mask"].numpy()})[0]
        return out

    return encode


def cosine_agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    cos = (a * b).sum(1)
    return float(cos.mean()), float(cos.min())


class Autocast:
    """``model.encode`` under torch's bf16 autocast on the CPU."""

    def __init__(self, model):
        self.model = model

    def encode(self, *args, **kwargs) -> np.ndarray:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.model.encode(*args, **kwargs)


CANDIDATES = ("ragcun", "torch_bf16", "int8_tensor", "int8_channel", "openvino", "openvino-bf16", "openvino-int8")


def scifact_ndcg(encode_documents, encode_queries, distance: str) -> float:
    from ragcun.data.retrieval_sets import load_beir
    from ragcun.eval.in_process import exact_search, mean_metrics, per_query_metrics

    test = load_beir(REPO / "data" / "scifact", "test")
    rows = exact_search(encode_documents(test.corpus_texts), encode_queries(test.query_texts), 10, distance)
    ranked = {q: [test.corpus_ids[i] for i in row] for q, row in zip(test.query_ids, rows)}
    return mean_metrics(per_query_metrics(test.qrels, ranked))["ndcg@10"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num_documents", type=int, default=600)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--ndcg", nargs="*", default=[], choices=list(CANDIDATES),
                   help="also nDCG@10 on SciFact test for these candidates (each encodes the corpus: ~4 min on "
                        "2 cores in torch)")
    p.add_argument("--model_path", default=None, help="a ragcun checkpoint (default: the untrained MiniLM)")
    p.add_argument("--distance", default="cosine", choices=["cosine", "l2", "ip"], help="ranking distance of --ndcg")
    p.add_argument("--onnx", action="store_true", help="include ONNX Runtime (pip install onnx onnxruntime)")
    p.add_argument("--output", default=str(REPO / "bench" / "results" / "encode_bench.json"))
    a = p.parse_args()
    import tempfile

    from sentence_transformers import SentenceTransformer

    from ragcun.data.io import write_json
    from ragcun.data.retrieval_sets import load_beir_corpus

    corpus = load_beir_corpus(REPO / "data" / "scifact").texts
    texts = corpus[: a.num_documents]
    model = load_encoder(a.model_path, base_model=None if a.model_path else DEFAULT_BASE_MODEL).eval()
    st = SentenceTransformer(resolve_model_path(DEFAULT_BASE_MODEL), device="cpu")
    st.max_seq_length = model.config.max_doc_length
    models = {"ragcun": model, "torch_bf16": Autocast(model), "int8_tensor": quantized(model, False),
              "int8_channel": quantized(model, True), "openvino": with_backend(model, "openvino"),
              "openvino-bf16": with_backend(model, "openvino-bf16"),
              "openvino-int8": with_backend(model, "openvino-int8", calibration_texts=corpus)}
    encoders = {"sentence-transformers": lambda t: st.encode(t, batch_size=a.batch_size)}
    encoders.update({name: (lambda t, m=m: m.encode(t, "document", a.batch_size, show_progress_bar=False))
                     for name, m in models.items()})
    workdir = Path(tempfile.mkdtemp())
    if a.onnx:
        encoders["onnx"] = onnx_encoder(model, workdir)
    seconds: dict[str, list[float]] = {name: [] for name in encoders}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(a.rounds):
        for name, encode in encoders.items():
            started = time.perf_counter()
            vectors[name] = encode(texts)
            seconds[name].append(time.perf_counter() - started)
    st_rate = len(texts) / statistics.median(seconds["sentence-transformers"])
    rows = []
    for name in encoders:
        rate = len(texts) / statistics.median(seconds[name])
        mean_cos, min_cos = cosine_agreement(vectors[name], vectors["ragcun"])
        row = {"encoder": name, "docs_per_s": rate, "over_st": rate / st_rate, "cos_mean": mean_cos, "cos_min": min_cos}
        if name in a.ndcg:
            m = models[name]
            row["scifact_ndcg@10"] = scifact_ndcg(
                lambda t, m=m: m.encode(t, "document", a.batch_size, show_progress_bar=False),
                lambda t, m=m: m.encode(t, "query", a.batch_size, show_progress_bar=False), a.distance)
        rows.append(row)
    print(f"{'encoder':24} {'docs/s':>8} {'vs ST':>6} {'cos mean':>9} {'cos min':>8} {'nDCG@10':>8}")
    for r in rows:
        ndcg = f"{r['scifact_ndcg@10']:.4f}" if "scifact_ndcg@10" in r else "-"
        print(f"{r['encoder']:24} {r['docs_per_s']:8.1f} {r['over_st']:6.2f} {r['cos_mean']:9.4f} {r['cos_min']:8.4f} "
              f"{ndcg:>8}")
    write_json({"command": " ".join(["bench/encode_bench.py", *sys.argv[1:]]), "cpus": os.cpu_count(),
                "threads": torch.get_num_threads(), "torch": torch.__version__,
                "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "num_documents": len(texts),
                "max_doc_length": model.config.max_doc_length, "model": a.model_path or DEFAULT_BASE_MODEL,
                "distance": a.distance, "rows": rows, "target": ">= 1.5 x ST, <= 0.002 nDCG@10"},
               a.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
