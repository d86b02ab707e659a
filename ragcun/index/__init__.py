"""Indexes, one role per module:

- :mod:`~ragcun.index.faiss_index`: FAISS index types (flat, HNSW, IVF-PQ, SQ8, factory strings), build,
  search, save/load without pickle, the GPU clone;
- :mod:`~ragcun.index.quantization`: ragcun's compressed types — fixed-range int8 and sign bits with
  rescoring (``BinaryIndex``);
- :mod:`~ragcun.index.bm25`: the lexical index (bm25s) and the fusion of dense and BM25 rankings;
- :mod:`~ragcun.index.directory`: the index directory on disk (documents, model, manifest, checksum);
- :mod:`~ragcun.index.build`: building an index directory over a corpus with Ray Data batch inference.

Nothing is imported here, so ``import ragcun.index`` loads neither FAISS nor Ray.
"""
