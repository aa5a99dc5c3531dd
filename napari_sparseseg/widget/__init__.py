"""The napari face of the package (Qt via qtpy).  The headless core never imports this package.

Modules: ``main`` (the dock widget), ``class_table``, ``layers``, ``sam_panel`` (interactive SAM),
``training_panel`` (train / stream / correct / review), ``session_panel`` (export, sessions,
autosave), ``runner`` and ``jobs`` (background threads -> Qt), ``corrections`` (Qt-free edit tracking),
``loss_plot``.
"""
