"""The napari face of the package (Qt via qtpy).  The headless core never imports this package.

Modules: ``main`` (the dock widget), ``class_table``, ``layers``, ``sam_panel`` (interactive SAM),
``training_panel`` (a view of the headless correction loop), ``session_panel`` (export, sessions,
autosave), ``training_runner`` and ``jobs`` (background threads -> Qt), ``corrections`` (Qt-free edit tracking),
``loss_plot``.
"""
