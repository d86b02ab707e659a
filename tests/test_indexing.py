"""jobs/build_index.py on a local Ray: Ray Data batch inference into an index directory that round-trips
through GaussianRetriever.load; bad corpora fail before encoding and leave nothing behind."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest

from ragcun import GaussianRetriever
from ragcun.cli import run_main
from ragcun.index.directory import read_manifest

from .conftest import REPO, SAMPLE_DOCS

sys.path.insert(0, str(REPO / "jobs"))
import build_index as build_index_job  # noqa: E402

pytestmark = pytest.mark.ray


@pytest.fixture
def checkpoint(tiny_model, tmp_path) -> Path:
    return tiny_model.save_checkpoint(tmp_path / "model.pt")


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def corpus_records() -> list[dict]:
    records = [{"_id": f"doc{i}", "text": t, "year": 2000 + i} for i, t in enumerate(SAMPLE_DOCS * 5)]
    records[0]["title"] = "Python"
    return records


def test_build_index_round_trips_through_the_retriever(ray_cluster, tiny_model, checkpoint, tmp_path):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", corpus_records())
    out = tmp_path / "index"
    code = run_main(build_index_job.main, ["--corpus", str(corpus), "--model_path", str(checkpoint),
                                           "--output_dir", str(out), "--batch_size", "4"])
    assert code == 0
    assert {p.name for p in out.iterdir()} == {"index.faiss", "documents.parquet", "model.pt", "manifest.json",
                                               ".ragcun-output"}
    manifest = read_manifest(out)
    assert manifest["num_documents"] == 30 and manifest["dim"] == 16 and manifest["distance"] == "l2"
    assert manifest["index_type"] == "flat" and manifest["model"]["checkpoint"] == "model.pt"

    loaded = GaussianRetriever.load(out)
    records = corpus_records()
    assert loaded.doc_ids == [r["_id"] for r in records]  # row i of the index is document i
    assert loaded.documents[0] == "Python " + SAMPLE_DOCS[0] and loaded.documents[1] == SAMPLE_DOCS[1]
    assert loaded.metadata[0] == {"title": "Python", "year": 2000} and loaded.metadata[3] == {"year": 2003}
    # The Ray Data encoders gave the same vectors as the model in this process.
    expected = tiny_model.encode(loaded.documents, "document")
    np.testing.assert_allclose(loaded.index.reconstruct_n(0, 30), expected, atol=1e-5)
    # ...so retrieval equals a retriever built in-process from the same documents.
    direct = GaussianRetriever(model=tiny_model)
    direct.add_documents(loaded.documents, ids=loaded.doc_ids)
    for query in ("machine learning models", "cats sleep", "vaccine trial"):
        got, want = loaded.search([query], 5)[0], direct.search([query], 5)[0]
        assert [h["id"] for h in got] == [h["id"] for h in want]
        assert [h["distance"] for h in got] == pytest.approx([h["distance"] for h in want], abs=1e-4)


@pytest.mark.parametrize("index_type, faiss_class", [("hnsw", faiss.IndexHNSWFlat), ("sq8", faiss.IndexScalarQuantizer),
                                                     ("IVF4,Flat", faiss.IndexIVFFlat)])
def test_index_types_and_corpus_formats(ray_cluster, checkpoint, tmp_path, index_type, faiss_class):
    if index_type == "hnsw":  # a BEIR folder
        beir = tmp_path / "beir"
        beir.mkdir()
        write_jsonl(beir / "corpus.jsonl", corpus_records())
        source, n = beir, 30
    elif index_type == "sq8":  # one document per line
        source = tmp_path / "docs.txt"
        source.write_text("\n".join(SAMPLE_DOCS * 4) + "\n\n")
        n = 24
    else:  # Parquet
        import pyarrow as pa
        import pyarrow.parquet as pq

        source = tmp_path / "corpus.parquet"
        pq.write_table(pa.Table.from_pylist([{"id": r["_id"], "text": r["text"]} for r in corpus_records()]), source)
        n = 30
    out = tmp_path / "index"
    assert run_main(build_index_job.main, ["--corpus", str(source), "--model_path", str(checkpoint),
                                           "--output_dir", str(out), "--index_type", index_type]) == 0
    loaded = GaussianRetriever.load(out)
    assert isinstance(faiss.downcast_index(loaded.index), faiss_class) and loaded.index.ntotal == n == len(loaded)
    if index_type == "sq8":
        assert loaded.doc_ids[:3] == ["0", "1", "2"]
    # An approximate index still finds a document's own vector (or an identical copy's) first.
    hits = loaded.search_vectors(loaded.model.encode([loaded.documents[2]], "document"), 1)
    assert hits[0][0]["text"] == loaded.documents[2]


@pytest.mark.parametrize("lines, message", [
    (['{"_id": "a", "text": "one"}', '{"_id": "b", "text": "two"}', '{"_id": "c"}'], "corpus.jsonl:3: field 'text'"),
    (['{"_id": "a", "text": "one"}', '{"_id": "a", "text": "two"}'], "corpus.jsonl:2: field 'id': duplicate"),
    (['{"_id": "a", "text": "   "}'], "empty corpus"),  # its only document is empty, so skipped
    (['{"text": "no id"}'], "corpus.jsonl:1: field '_id': missing"),
    (['{"_id": "a", "text": "one"}', '{"_id": "b", "text": '], "corpus.jsonl:2: malformed JSON"),
    ([], "empty corpus"),
])
def test_bad_corpus_fails_before_encoding(ray_cluster, checkpoint, tmp_path, capsys, lines, message):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(lines) + "\n")
    out = tmp_path / "index"
    code = run_main(build_index_job.main, ["--corpus", str(corpus), "--model_path", str(checkpoint),
                                           "--output_dir", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert not out.exists() and not list(tmp_path.glob(".index.*"))


def test_empty_documents_are_skipped_unless_strict(ray_cluster, checkpoint, tmp_path, capsys, caplog):
    records = corpus_records()[:6]
    records[2] = {"_id": "blank", "title": "", "text": " "}
    corpus = write_jsonl(tmp_path / "corpus.jsonl", records)
    out = tmp_path / "index"
    with caplog.at_level("WARNING"):
        assert run_main(build_index_job.main, ["--corpus", str(corpus), "--model_path", str(checkpoint),
                                               "--output_dir", str(out), "--batch_size", "4"]) == 0
    assert "skipped 1 document(s)" in caplog.text and "line 3, id 'blank'" in caplog.text
    loaded = GaussianRetriever.load(out)
    assert loaded.doc_ids == ["doc0", "doc1", "doc3", "doc4", "doc5"] and loaded.index.ntotal == 5
    strict = tmp_path / "strict"
    assert run_main(build_index_job.main, ["--corpus", str(corpus), "--model_path", str(checkpoint),
                                           "--output_dir", str(strict), "--strict"]) == 2
    assert "corpus.jsonl:3: field 'text': empty" in capsys.readouterr().err and not strict.exists()


def test_bad_flags_exit_2_with_usage(ray_cluster, checkpoint, tmp_path, capsys):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", corpus_records())
    for extra, message in ((["--index_type", "NotAnIndex"], "FAISS cannot build"),
                           (["--num_encoders", "0"], "num_encoders must be >= 1"),
                           (["--cpus_per_encoder", "8"], "do not fit"),
                           (["--encoder_backend", "onnx"], "invalid choice: 'onnx'"),
                           (["--encoder_backend", "openvino", "--use_gpu"], "runs on the CPU")):
        with pytest.raises(SystemExit) as exit_info:
            build_index_job.main(["--corpus", str(corpus), "--model_path", str(checkpoint),
                                  "--output_dir", str(tmp_path / "index"), *extra])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "index").exists()
    assert run_main(build_index_job.main, ["--corpus", str(tmp_path / "nope.jsonl"),
                                           "--output_dir", str(tmp_path / "index")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_embedding_cache_is_shared_with_evaluation(ray_cluster, checkpoint, tmp_path):
    """The build keeps its corpus embeddings under the key evaluation uses (same weights, same texts in
    order), and a later build of the same corpus and model takes them instead of encoding."""
    from ragcun.embedding_cache import EmbeddingCache, cache_key
    from ragcun.model import load_encoder

    corpus = write_jsonl(tmp_path / "corpus.jsonl", corpus_records())
    cache = tmp_path / "cache"
    args = ["--corpus", str(corpus), "--model_path", str(checkpoint), "--cache_dir", str(cache)]
    assert run_main(build_index_job.main, args + ["--output_dir", str(tmp_path / "first")]) == 0
    first = GaussianRetriever.load(tmp_path / "first")
    assert read_manifest(tmp_path / "first")["build"]["embeddings_from_cache"] is False
    key = cache_key(load_encoder(str(checkpoint)), first.documents, "document")
    entry = cache / f"{key}.npy"
    assert [p.name for p in cache.iterdir()] == [entry.name]
    np.testing.assert_allclose(np.load(entry), first.index.reconstruct_n(0, 30), atol=1e-6)
    # A marked entry proves the second build read the cache rather than encoding again.
    EmbeddingCache(cache).save(key, np.full((30, 16), 0.25, np.float32))
    assert run_main(build_index_job.main, args + ["--output_dir", str(tmp_path / "second")]) == 0
    assert read_manifest(tmp_path / "second")["build"]["embeddings_from_cache"] is True
    np.testing.assert_array_equal(GaussianRetriever.load(tmp_path / "second").index.reconstruct_n(0, 30), 0.25)


def test_openvino_int8_index_encodes_queries_as_its_documents(ray_cluster, tiny_model, checkpoint, tmp_path):
    """--encoder_backend openvino-int8: the driver calibrates once on the corpus, the Ray Data actors encode
    with that graph, the directory keeps it (checksummed), and the loaded retriever encodes queries with it."""
    from ragcun.errors import RagcunError
    from ragcun.openvino_encoder import IR_BIN, IR_XML, OpenVINOEncoder

    corpus = write_jsonl(tmp_path / "corpus.jsonl", corpus_records())
    out = tmp_path / "index"
    code = run_main(build_index_job.main, ["--corpus", str(corpus), "--model_path", str(checkpoint),
                                           "--output_dir", str(out), "--batch_size", "4",
                                           "--encoder_backend", "openvino-int8"])
    assert code == 0
    manifest = read_manifest(out)
    assert manifest["encoder_backend"] == "openvino-int8" and len(manifest["encoder_sha256"]) == 64
    assert (out / IR_XML).is_file() and (out / IR_BIN).is_file() and (out / "model.pt").is_file()

    loaded = GaussianRetriever.load(out)
    assert isinstance(loaded.model, OpenVINOEncoder) and loaded.model.backend == "openvino-int8"
    vectors = loaded.index.reconstruct_n(0, 30)
    # The actors used the saved graph: this process re-encodes the documents to the same vectors...
    np.testing.assert_allclose(vectors, loaded.model.encode(loaded.documents, "document"), atol=1e-5)
    # ...which are int8's, near but not equal to the float model's.
    reference = tiny_model.encode(loaded.documents, "document")
    cosine = (vectors * reference).sum(1) / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference, axis=1))
    assert cosine.min() > 0.9 and not np.allclose(vectors, reference, atol=1e-5)
    assert loaded.search([loaded.documents[7]], 1)[0][0]["text"] == loaded.documents[7]

    (out / IR_BIN).write_bytes((out / IR_BIN).read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(RagcunError, match="does not match the checksum"):
        GaussianRetriever.load(out)
