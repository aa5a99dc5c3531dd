"""Compute on another machine: ``sparseseg serve`` (FastAPI + uvicorn) and its httpx client.

``engine`` is the headless session (no HTTP), ``app`` the web layer, ``sessions`` the per-client
table, ``auth`` the token rules, ``wire`` the payload formats (no pickle), ``client`` the other side.
Install with the ``server`` extra: ``pip install 'napari-sparseseg[server]'``.
"""
