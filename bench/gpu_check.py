#!/usr/bin/env python3
"""GPU checks that need neither Ray nor FAISS (a GPU image has torch, transformers and sentence-transformers).

    python bench/gpu_check.py                 # on a GPU: full shapes, ~5 minutes on an H100
    python bench/gpu_check.py --tiny          # anywhere (CI runs this on the CPU): tiny shapes, same code

Sections (each row of the table is also in the JSON, default bench/results/gpu_check.json):

- ``encoder``: one training step (InfoNCE + SIGReg through ragcun's StepRunner, AdamW) of an
  EmbeddingGemma-300m-shaped encoder with random weights (Gemma3, hidden 768, 24 layers, bidirectional),
  batch 128, queries of 64 and documents of 256 tokens, bf16 autocast on a GPU: steps/s, triplets/s, and MFU
  = 6 × (non-embedding parameters) × tokens per second / the device's dense bf16 peak (attention FLOPs left
  out, so MFU is a lower bound);
- ``st``: the same backbone, batch and tokens through sentence-transformers' MultipleNegativesRankingLoss
  step, and ragcun's step over it (ratio > 1: ragcun faster);
- ``sigreg``: SIGReg forward + backward at N 4096, D 768, 1024 slices;
- ``search``: exact top-10 search of 1,000 queries over 1M × 768 float32 vectors in torch (matmul + topk in
  chunks), queries/s;
- ``resume``: the resume-on-GPU regression — a checkpoint written on the CPU with AdamW state is resumed by
  ``ragcun.train.loop.start_training`` with the model moved to the device, and one optimizer step runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from ragcun.config import LossConfig, ModelConfig, TrainConfig, TrainJobConfig  # noqa: E402
from ragcun.losses import GaussianEmbeddingLoss  # noqa: E402
from ragcun.losses.sigreg import SIGRegLoss  # noqa: E402
from ragcun.model import GaussianEmbeddingModel, load_checkpoint_payload  # noqa: E402
from ragcun.train.loop import StepRunner, build_optimizer, start_training  # noqa: E402
from ragcun.train.schedule import lr_multiplier  # noqa: E402

# Dense bf16 peaks (FLOP/s) of the devices this project is lent; others report no MFU.
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}
FULL = {"hidden": 768, "layers": 24, "heads": 3, "head_dim": 256, "intermediate": 1152, "vocab": 262144,
        "batch": 128, "query_len": 64, "doc_len": 256, "sigreg_n": 4096, "sigreg_d": 768,
        "search_n": 1_000_000, "search_d": 768, "search_q": 1000, "steps": 6}
TINY = {"hidden": 64, "layers": 2, "heads": 2, "head_dim": 32, "intermediate": 128, "vocab": 512,
        "batch": 4, "query_len": 8, "doc_len": 16, "sigreg_n": 256, "sigreg_d": 32,
        "search_n": 20_000, "search_d": 32, "search_q": 100, "steps": 2}


def word_tokenizer(vocab_size: int):
    """A word-level tokenizer built locally (no hub): the checks feed random token ids anyway."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1, "<bos>": 2, "<eos>": 3, **{f"w{i}": i + 4 for i in range(vocab_size - 4)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<bos>",
                                   eos_token="<eos>", model_max_length=4096)


def gemma_config(s: dict) -> dict:
    return {"model_type": "gemma3_text", "vocab_size": s["vocab"], "hidden_size": s["hidden"],
            "intermediate_size": s["intermediate"], "num_hidden_layers": s["layers"],
            "num_attention_heads": s["heads"], "num_key_value_heads": 1, "head_dim": s["head_dim"],
            "max_position_embeddings": 2048, "sliding_window": 512, "use_bidirectional_attention": True,
            "pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3}


def build_encoder(s: dict, device: torch.device) -> GaussianEmbeddingModel:
    torch.manual_seed(0)
    config = ModelConfig(base_model="random-gemma3", output_dim=None, pooling="mean",
                         max_query_length=s["query_len"], max_doc_length=s["doc_len"])
    model = GaussianEmbeddingModel.from_backbone_config(config, gemma_config(s), word_tokenizer(s["vocab"]))
    return model.to(device)


def random_batch(s: dict, device: torch.device) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    batch = {}
    for role, length in (("query", s["query_len"]), ("positive", s["doc_len"]), ("negative", s["doc_len"])):
        batch[f"{role}_input_ids"] = torch.randint(4, s["vocab"], (s["batch"], length), generator=g).to(device)
        batch[f"{role}_attention_mask"] = torch.ones(s["batch"], length, dtype=torch.long, device=device)
    return batch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, repeats: int, device: torch.device) -> float:
    """Median seconds of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def encoder_section(s: dict, device: torch.device, precision: str) -> tuple[dict, GaussianEmbeddingModel, dict]:
    model = build_encoder(s, device).train()
    job = TrainJobConfig(model=model.config, train=TrainConfig(learning_rate=1e-5, warmup_steps=0))
    optimizer = build_optimizer(model, job)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(0, 1000))
    loss = GaussianEmbeddingLoss(LossConfig(lambda_isotropy=0.05, lambda_variance=0.0), distributed=False)
    runner = StepRunner(model, loss, optimizer, scheduler, precision=precision, device=device)
    batch = random_batch(s, device)

    def step() -> None:
        runner.micro_step(batch, 0, sync=True)
        runner.optimizer_step()

    seconds = timed(step, s["steps"], device)
    tokens = s["batch"] * (s["query_len"] + 2 * s["doc_len"])
    params = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n)
    peak = peak_flops(device)
    achieved = 6 * params * tokens / seconds
    row = {"step_s": seconds, "steps_per_s": 1 / seconds, "triplets_per_s": s["batch"] / seconds,
           "tokens_per_s": tokens / seconds, "non_embedding_params": params, "achieved_tflops": achieved / 1e12,
           "mfu": achieved / peak if peak else None}
    return row, model, batch


def st_section(s: dict, device: torch.device, precision: str, ragcun_step_s: float) -> dict:
    """sentence-transformers' MNRL step on the same random backbone and token ids."""
    from sentence_transformers import SentenceTransformer, losses
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    model = build_encoder(s, torch.device("cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        model.backbone.save_pretrained(tmp)
        model.tokenizer.save_pretrained(tmp)
        st = SentenceTransformer(modules=[Transformer(tmp, max_seq_length=s["doc_len"]),
                                          Pooling(s["hidden"], pooling_mode="mean")], device=str(device))
    st.train()
    mnrl = losses.MultipleNegativesRankingLoss(st)
    optimizer = torch.optim.AdamW(st.parameters(), lr=1e-5)
    batch = random_batch(s, device)
    features = [{"input_ids": batch[f"{r}_input_ids"], "attention_mask": batch[f"{r}_attention_mask"]}
                for r in ("query", "positive", "negative")]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def step() -> None:
        with autocast:
            loss = mnrl(features, None)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds = timed(step, s["steps"], device)
    return {"st_step_s": seconds, "ragcun_step_s": ragcun_step_s, "ragcun_speed_ratio": seconds / ragcun_step_s}


def sigreg_section(s: dict, device: torch.device) -> dict:
    z = torch.randn(s["sigreg_n"], s["sigreg_d"], device=device, requires_grad=True)
    sigreg = SIGRegLoss(num_slices=1024, sync_distributed=False)

    def step() -> None:
        sigreg(z).backward()

    return {"sigreg_fwd_bwd_ms": 1000 * timed(step, 5, device), "n": s["sigreg_n"], "d": s["sigreg_d"]}


@torch.no_grad()
def search_section(s: dict, device: torch.device) -> dict:
    g = torch.Generator(device="cpu").manual_seed(0)
    corpus = torch.randn(s["search_n"], s["search_d"], generator=g).to(device)
    queries = torch.randn(s["search_q"], s["search_d"], generator=g).to(device)
    corpus_sq = (corpus * corpus).sum(1)

    def search() -> None:
        for start in range(0, len(queries), 256):
            q = queries[start : start + 256]
            d2 = corpus_sq.unsqueeze(0) - 2 * q @ corpus.T  # ‖q‖² is the same for a row: ranking unchanged
            torch.topk(d2, 10, dim=1, largest=False)

    seconds = timed(search, 3, device)
    return {"search_s": seconds, "queries_per_s": s["search_q"] / seconds, "vectors": s["search_n"],
            "dim": s["search_d"], "corpus_gb": corpus.numel() * 4 / 1e9}


def resume_section(model: GaussianEmbeddingModel, batch: dict, device: torch.device) -> dict:
    """Write a checkpoint with AdamW state on the CPU, resume it onto ``device`` with the loop's own start-up
    (``start_training``, ``prepare`` = move to the device), and take a step."""
    model = model.to(torch.device("cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        model.backbone.save_pretrained(tmp)  # the job's base model: a local folder, as a user's would be
        model.tokenizer.save_pretrained(tmp)
        job = TrainJobConfig(model=ModelConfig(**{**model.config.to_dict(), "base_model": tmp}),
                             train=TrainConfig(learning_rate=1e-5, warmup_steps=0))
        optimizer = build_optimizer(model, job)
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        optimizer.step()
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(0, 10))
        path = model.save_checkpoint(Path(tmp) / "c.pt", optimizer_state_dict=optimizer.state_dict(),
                                     scheduler_state_dict=scheduler.state_dict(), epoch=1, step=1, training_log=[])
        state = start_training(job, 10, load_checkpoint_payload(path), lambda m: m.to(device))
    on_device = all(t.device.type == device.type for st in state.optimizer.state.values() for t in st.values()
                    if torch.is_tensor(t) and t.dim() > 0)
    loss = GaussianEmbeddingLoss(LossConfig(lambda_isotropy=0.0, lambda_variance=0.0), distributed=False)
    runner = StepRunner(state.model, loss, state.optimizer, state.scheduler, device=device)
    runner.micro_step({k: v[:2].to(device) for k, v in batch.items()}, 1, sync=True)
    runner.optimizer_step()
    return {"resumed_state_on_device": on_device, "step_after_resume": "ok"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="tiny shapes (CI on the CPU)")
    p.add_argument("--output", default="bench/results/gpu_check.json")
    p.add_argument("--sections", nargs="*", default=["encoder", "st", "sigreg", "search", "resume"])
    a = p.parse_args()
    shapes = TINY if a.tiny else FULL
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "no"
    results: dict = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                     "torch": torch.__version__, "precision": precision, "tiny": a.tiny, "shapes": shapes,
                     "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
    started = time.perf_counter()
    encoder_row, model, batch = encoder_section(shapes, device, precision)
    if "encoder" in a.sections:
        results["encoder"] = encoder_row
    if "st" in a.sections:
        results["st"] = st_section(shapes, device, precision, encoder_row["step_s"])
    if "sigreg" in a.sections:
        results["sigreg"] = sigreg_section(shapes, device)
    if "search" in a.sections:
        results["search"] = search_section(shapes, device)
    if "resume" in a.sections:
        results["resume"] = resume_section(model, batch, device)
    results["wall_s"] = time.perf_counter() - started
    for section in ("encoder", "st", "sigreg", "search", "resume"):
        if section in results:
            cells = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                              for k, v in results[section].items())
            print(f"{section:8s} {cells}")
    out = Path(a.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out} ({results['device']}, {results['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
