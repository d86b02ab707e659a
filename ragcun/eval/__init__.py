"""Evaluation, one role per module: metrics.py (trec_eval's measures through pytrec_eval), retrieval.py
(encode a retrieval set, search it with FAISS, TREC run files), in_process.py (the same search and the
headline measures in torch alone, for machines without FAISS or pytrec_eval), isotropy.py, whitening.py,
compare.py (models side by side), significance.py (paired tests), report.py, job.py (the evaluation
job of ``jobs/evaluate.py``).

Nothing is imported here, so a module that needs neither FAISS nor pytrec_eval loads without them.
"""
