"""Shared fixtures: tiny random BERT and Gemma3 backbones saved as local folders, with a word-level
tokenizer built by the ``tokenizers`` library (no download anywhere)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

REPO = Path(__file__).resolve().parents[1]
SCIFACT = REPO / "data" / "scifact"

WORDS = (
    "the a of and to in is was for on that with as by it are be this from at or an which have not has but "
    "python java programming language machine learning ai artificial intelligence data model models neural "
    "network networks cat cats dog dogs sleep sleeps run runs fast slow cell cells protein proteins gene genes "
    "cancer disease patients study studies treatment effect effects increase decrease blood brain heart risk "
    "vaccine virus infection immune response drug drugs trial clinical results show shows found what how why "
    "when where who query document search retrieval embedding embeddings gaussian vector vectors distance "
    "title text none task result"
).split()


def _word_tokenizer(bert_style: bool):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] if bert_style else ["<pad>", "<unk>", "<bos>", "<eos>"]
    vocab = {tok: i for i, tok in enumerate(specials + sorted(set(WORDS)) + list(".,:|?!0123456789"))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=specials[1]))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if bert_style:
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
        return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                       sep_token="[SEP]", mask_token="[MASK]", model_max_length=128), len(vocab)
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<bos>",
                                   eos_token="<eos>", model_max_length=128), len(vocab)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> str:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    tokenizer, vocab_size = _word_tokenizer(bert_style=True)
    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, hidden_dropout_prob=0.1,
                        attention_probs_dropout_prob=0.1)
    path = tmp_path_factory.mktemp("tiny_bert")
    BertModel(config, add_pooling_layer=False).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_gemma_dir(tmp_path_factory) -> str:
    import torch
    from transformers import Gemma3TextConfig, Gemma3TextModel

    torch.manual_seed(0)
    tokenizer, vocab_size = _word_tokenizer(bert_style=False)
    config = Gemma3TextConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=128,
                              sliding_window=16, use_bidirectional_attention=True, pad_token_id=0, bos_token_id=2,
                              eos_token_id=3)
    path = tmp_path_factory.mktemp("tiny_gemma")
    Gemma3TextModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture
def tiny_model(tiny_bert_dir):
    from ragcun.config import ModelConfig
    from ragcun.model import GaussianEmbeddingModel

    return GaussianEmbeddingModel.from_config(ModelConfig(base_model=tiny_bert_dir, output_dim=16))


SAMPLE_DOCS = [
    "Python is a programming language. It is used for machine learning and data.",
    "Cats sleep a lot. A cat sleeps in the sun and dogs run fast.",
    "Vaccine trial results show an immune response. The virus infection risk was not increased.",
    "Gene expression in cancer cells. Proteins increase the effect of the drug in patients.",
    "Neural networks are machine learning models. They learn embeddings of text for retrieval.",
    "Blood pressure and heart disease risk. Clinical studies found a decrease with treatment.",
]


@pytest.fixture(scope="session")
def served_index_dir(tmp_path_factory, tiny_bert_dir) -> Path:
    """A GaussianRetriever index directory of the sample documents (tiny model, 16-d), with metadata."""
    from ragcun import GaussianRetriever
    from ragcun.config import ModelConfig
    from ragcun.model import GaussianEmbeddingModel

    model = GaussianEmbeddingModel.from_config(ModelConfig(base_model=tiny_bert_dir, output_dim=16))
    retriever = GaussianRetriever(model=model)
    docs = [f"{d} {w}" for d in SAMPLE_DOCS for w in ("fast", "slow", "vector")]  # no ties
    retriever.add_documents(docs, ids=[f"d{i}" for i in range(len(docs))],
                            metadata=[{"n": i, "source": "sample"} for i in range(len(docs))])
    return retriever.save(tmp_path_factory.mktemp("serve") / "index")


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray for the whole session (never xdist, never `ray stop`: tests share it)."""
    import ray

    if not ray.is_initialized():
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dashboard_port = s.getsockname()[1]
        # Ray Train's clean-up actor (which releases the placement groups of trials Tune stops) finds the state
        # API by auto-detection, which can pick another cluster on this machine; name ours for every process.
        os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{dashboard_port}"
        ray.init(address="local", num_cpus=2, include_dashboard=True, dashboard_port=dashboard_port,
                 log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_triplets(tmp_path_factory):
    """48 training and 12 validation ICT triplets over the sample documents."""
    import json

    from ragcun.data.pairs import generate_pairs

    pairs = generate_pairs(SAMPLE_DOCS * 10, seed=0)
    root = tmp_path_factory.mktemp("triplets")
    (root / "train.json").write_text(json.dumps(pairs[:48]))
    (root / "val.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs[48:]))
    return root / "train.json", root / "val.jsonl"
