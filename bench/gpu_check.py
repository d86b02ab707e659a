#!/usr/bin/env python3
"""GPU checks that need neither Ray nor FAISS (a GPU image has torch, transformers and sentence-transformers).

    python bench/gpu_check.py                 # on a GPU: full shapes; on an H200, 85 s + 239 s (compiled)
    python bench/gpu_check.py --tiny          # anywhere (CI runs this on the CPU): tiny shapes, same code

Sections (each row of the table is also in the JSON, default bench/results/gpu_check.json):

- ``encoder``: one training step (InfoNCE + SIGReg through ragcun's StepRunner, AdamW) of an
  EmbeddingGemma-300m-shaped encoder with random weights (Gemma3, hidden 768, 24 layers, bidirectional),
  batch 128, queries of 64 and documents of 256 tokens, bf16 autocast on a GPU: steps/s, triplets/s, and MFU
  = 6 × (non-embedding parameters) × tokens per second / the device's dense bf16 peak (attention FLOPs left
  out, so MFU is a lower bound);
  the same step as GradCache (``mini_batch_size`` 32, the cached loss of the BM25 issue) beside it, and the
  peak device memory of each;
- ``st``: the same backbone, batch and tokens through sentence-transformers' MultipleNegativesRankingLoss
  step, and ragcun's step over it (ratio > 1: ragcun faster);
- ``sigreg``: SIGReg forward + backward at N 4096, D 768, 1024 slices;
- ``search``: exact top-10 search of 1,000 queries over 1M × 768 float32 vectors in torch (matmul + topk in
  chunks), queries/s;
- ``cached``: GradCache's dropout replay on the device (CUDA's generator, not the CPU's), eager and with
  ``--compile``: a small BERT with dropout in train mode, float32; the cached step's loss and gradients
  against a pass that keeps every mini-batch's graph under the same seed (max gradient difference over the
  largest gradient);
- ``resume``: the resume-on-GPU regression — a checkpoint written on the CPU with AdamW state is resumed by
  ``ragcun.train.loop.start_training`` with the model moved to the device, and one optimizer step runs.
- ``compiled``: ``--compile`` (``torch.compile`` of the backbone) on the encoder step, beside the eager step
  of the same model in the same run: the first step's loss against eager's, the compile time (the first
  compiled step), steps/s, peak memory and the speed-up. Last, since Inductor's compile is minutes.

A section that fails is recorded with its traceback and the others still run; the JSON is rewritten after each
section, and the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from ragcun.config import LossConfig, ModelConfig, TrainConfig, TrainJobConfig  # noqa: E402
from ragcun.data.io import write_json  # noqa: E402
from ragcun.losses import GaussianEmbeddingLoss  # noqa: E402
from ragcun.losses.sigreg import SIGRegLoss  # noqa: E402
from ragcun.model import GaussianEmbeddingModel, load_checkpoint_payload  # noqa: E402
from ragcun.train.loop import (  # noqa: E402
    StepRunner,
    build_optimizer,
    compile_backbone,
    encode_batch,
    start_training,
)
from ragcun.train.schedule import lr_multiplier  # noqa: E402

# Dense bf16 peaks (FLOP/s) of the devices this project is lent; others report no MFU.
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}
FULL = {"hidden": 768, "layers": 24, "heads": 3, "head_dim": 256, "intermediate": 1152, "vocab": 262144,
        "batch": 128, "query_len": 64, "doc_len": 256, "sigreg_n": 4096, "sigreg_d": 768,
        "search_n": 1_000_000, "search_d": 768, "search_q": 1000, "steps": 6}
TINY = {"hidden": 64, "layers": 2, "heads": 2, "head_dim": 32, "intermediate": 128, "vocab": 512,
        "batch": 4, "query_len": 8, "doc_len": 16, "sigreg_n": 256, "sigreg_d": 32,
        "search_n": 20_000, "search_d": 32, "search_q": 100, "steps": 2}
SECTIONS = ("encoder", "st", "sigreg", "search", "cached", "resume", "compiled")


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


def timed_with_memory(fn, repeats: int, device: torch.device) -> tuple[float, float | None]:
    """``timed`` and the peak device memory (GB) it reached; None on a CPU."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    seconds = timed(fn, repeats, device)
    return seconds, torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def encoder_step(s: dict, device: torch.device, precision: str):
    """The encoder in train mode, its StepRunner (InfoNCE + SIGReg, AdamW), a random batch, and ``step``: one
    micro-step and one optimizer step."""
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

    return model, runner, batch, step


def encoder_section(s: dict, device: torch.device, precision: str) -> tuple[dict, GaussianEmbeddingModel, dict]:
    model, runner, batch, step = encoder_step(s, device, precision)
    seconds, peak_memory = timed_with_memory(step, s["steps"], device)
    runner.mini_batch_size = max(1, s["batch"] // 4)
    cached_seconds, cached_memory = timed_with_memory(step, s["steps"], device)
    runner.mini_batch_size = None
    tokens = s["batch"] * (s["query_len"] + 2 * s["doc_len"])
    params = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n)
    peak = peak_flops(device)
    achieved = 6 * params * tokens / seconds
    row = {"step_s": seconds, "steps_per_s": 1 / seconds, "triplets_per_s": s["batch"] / seconds,
           "tokens_per_s": tokens / seconds, "non_embedding_params": params, "achieved_tflops": achieved / 1e12,
           "mfu": achieved / peak if peak else None, "peak_memory_gb": peak_memory,
           "cached_mini_batch": max(1, s["batch"] // 4), "cached_triplets_per_s": s["batch"] / cached_seconds,
           "cached_peak_memory_gb": cached_memory}
    return row, model, batch


def st_section(s: dict, device: torch.device, precision: str, ragcun_step_s: float) -> dict:
    """sentence-transformers' MNRL step on the same random backbone and token ids."""
    from sentence_transformers import SentenceTransformer

    try:
        from sentence_transformers.sentence_transformer import losses
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:  # sentence-transformers before its modules moved
        from sentence_transformers import losses
        from sentence_transformers.models import Pooling, Transformer

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


def compiled_section(s: dict, device: torch.device, precision: str) -> dict:
    model, runner, batch, step = encoder_step(s, device, precision)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    eager_loss = runner.micro_step(batch, 0, sync=True)["total"]
    runner.optimizer.zero_grad(set_to_none=True)
    eager_s, eager_memory = timed_with_memory(step, 3, device)
    print(f"compiled: eager step {eager_s:.4g} s; compiling", flush=True)
    model.load_state_dict(initial)  # the weights eager_loss saw
    del initial
    compile_backbone(model)
    sync(device)
    started = time.perf_counter()
    compiled_loss = runner.micro_step(batch, 0, sync=True)["total"]
    sync(device)
    compile_s = time.perf_counter() - started
    runner.optimizer.zero_grad(set_to_none=True)
    compiled_s, compiled_memory = timed_with_memory(step, s["steps"], device)
    return {"eager_step_s": eager_s, "compiled_step_s": compiled_s, "speedup": eager_s / compiled_s,
            "compile_s": compile_s, "eager_peak_memory_gb": eager_memory, "compiled_peak_memory_gb": compiled_memory,
            "first_loss_rel_diff": abs(compiled_loss - eager_loss) / abs(eager_loss)}


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


def cached_section(device: torch.device) -> dict:
    """GradCache replays each mini-batch's dropout from the saved generator state: on a GPU that is CUDA's;
    with ``--compile``, Inductor's own random kernels, seeded from that generator."""
    row = {}
    for prefix, compiled in (("", False), ("compiled_", True)):
        loss_diff, grad_diff = dropout_replay(device, compiled)
        row |= {f"{prefix}loss_abs_diff": loss_diff, f"{prefix}max_grad_diff_over_largest": grad_diff,
                f"{prefix}replays_dropout": bool(grad_diff <= 1e-4 and loss_diff <= 1e-5)}
    return row


def dropout_replay(device: torch.device, compiled: bool) -> tuple[float, float]:
    """A small BERT with dropout, in train mode, float32: the cached step's loss and gradients against a pass
    that keeps every mini-batch's graph under the same seed. Returns (|loss difference|, max gradient
    difference over the largest gradient)."""
    torch.manual_seed(0)
    bert = {"model_type": "bert", "vocab_size": 512, "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 128, "max_position_embeddings": 64,
            "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}
    config = ModelConfig(base_model="random-bert", output_dim=32, pooling="mean")
    models = [GaussianEmbeddingModel.from_backbone_config(config, bert, word_tokenizer(512)).to(device).train()
              for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    if compiled:
        for model in models:
            compile_backbone(model)
    loss = GaussianEmbeddingLoss(LossConfig(temperature=0.1, lambda_isotropy=0.5, lambda_variance=0.3,
                                            num_slices=16), distributed=False)
    shapes = {"batch": 16, "query_len": 12, "doc_len": 24, "vocab": 512}
    batch = random_batch(shapes, device)
    mini = 4
    torch.manual_seed(1)
    pieces = [encode_batch(models[0], {k: v[i:i + mini] for k, v in batch.items()}) for i in range(0, 16, mini)]
    q, p, n = (torch.cat([piece[i] for piece in pieces]) for i in range(3))
    reference = loss(q, p, n, step=3)
    reference["total"].backward()
    job = TrainJobConfig(model=config, train=TrainConfig(learning_rate=1e-3, warmup_steps=0))
    optimizer = build_optimizer(models[1], job)
    runner = StepRunner(models[1], loss, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(0, 10)),
                        grad_clip=0.0, device=device, mini_batch_size=mini)
    torch.manual_seed(1)
    cached = runner.micro_step(batch, step=3, sync=True)
    largest = max(a.grad.abs().max().item() for a in models[0].parameters() if a.grad is not None)
    diff = max((a.grad - b.grad).abs().max().item()
               for a, b in zip(models[0].parameters(), models[1].parameters()) if a.grad is not None)
    return abs(cached["total"] - float(reference["total"].detach())), diff / largest


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
    p.add_argument("--sections", nargs="*", default=list(SECTIONS), choices=SECTIONS)
    a = p.parse_args()
    shapes = TINY if a.tiny else FULL
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "no"
    results: dict = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                     "torch": torch.__version__, "libraries": library_versions(), "precision": precision,
                     "tiny": a.tiny, "shapes": shapes, "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
    out = Path(a.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    encoder_runs: list = []

    def encoder() -> tuple:
        """encoder_section's (row, model, batch), run once for the sections that need it, even if it fails:
        a second try would only spend minutes of a lent GPU on the same error."""
        if not encoder_runs:
            encoder_runs.append(None)
            encoder_runs[0] = encoder_section(shapes, device, precision)
        if encoder_runs[0] is None:
            raise RuntimeError("the encoder section failed: see its error")
        return encoder_runs[0]

    sections = {
        "encoder": lambda: encoder()[0],
        "st": lambda: st_section(shapes, device, precision, encoder()[0]["step_s"]),
        "sigreg": lambda: sigreg_section(shapes, device),
        "search": lambda: search_section(shapes, device),
        "cached": lambda: cached_section(device),
        "resume": lambda: resume_section(*encoder()[1:], device),
        "compiled": lambda: compiled_section(shapes, device, precision),
    }
    failed = []
    for name in SECTIONS:
        if name not in a.sections:
            continue
        section_started = time.perf_counter()
        try:
            results[name] = sections[name]()
        except Exception:  # one broken section must not hide the others' figures
            failed.append(name)
            results[name] = {"error": traceback.format_exc()}
        results[name]["section_s"] = time.perf_counter() - section_started
        print(f"{name:8s} " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                        for k, v in results[name].items()), flush=True)
        results["wall_s"] = time.perf_counter() - started
        write_json(results, out)
    print(f"wrote {out} ({results['device']}, {results['wall_s']:.0f} s)" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("transformers", "sentence-transformers", "tokenizers", "numpy"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


if __name__ == "__main__":
    sys.exit(main())
