"""The ragcun Serve application, importable as ``serve.app:app`` from the repository root.

    serve run serve.app:app index_dir=runs/demo/index            # foreground, http://127.0.0.1:8000
    serve run serve.app:app index_dir=/abs/index num_gpus=1 max_batch_size=32
    serve deploy serve/config.yaml                                # onto a running cluster (`ray start --head`)

Every ``key=value`` is a field of ``ragcun.config.ServeConfig``; the logic lives in ``ragcun.serving``.
"""

from ragcun.serving import app

__all__ = ["app"]
