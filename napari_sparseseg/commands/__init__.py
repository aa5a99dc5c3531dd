"""One module per ``sparseseg`` sub-command (see ``napari_sparseseg/cli.py``)."""
