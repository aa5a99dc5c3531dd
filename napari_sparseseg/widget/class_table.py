"""The class table: name, colour and which row means "background"; picking a row picks the brush label."""

from __future__ import annotations

from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QColorDialog,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QRadioButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..session import ClassTable
from .guard import guarded


class ClassTableWidget(QWidget):
    """Edits a :class:`ClassTable`.  ``changed`` fires after every edit; ``label_picked(id)`` on row pick."""

    changed = Signal()
    label_picked = Signal(int)

    def __init__(self, table: ClassTable, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table = table
        self._grid = QTableWidget(0, 4)
        self._grid.setHorizontalHeaderLabels(["id", "name", "colour", "bg"])
        hdr = self._grid.horizontalHeader()
        hdr.setSectionResizeMode(QHeaderView.ResizeToContents)
        hdr.setSectionResizeMode(1, QHeaderView.Stretch)
        self._grid.verticalHeader().setVisible(False)
        self._grid.setSelectionBehavior(QTableWidget.SelectRows)
        self._grid.setSelectionMode(QTableWidget.SingleSelection)
        self._grid.setMaximumHeight(130)
        self._grid.itemChanged.connect(self._on_item_changed)
        self._grid.itemSelectionChanged.connect(self._on_selection)
        add = QPushButton("+ class")
        add.setToolTip("Add a structure to segment")
        add.clicked.connect(lambda *_: self._add())
        rem = QPushButton("- class")
        rem.setToolTip("Remove the selected structure (its marks stay in the layer)")
        rem.clicked.connect(lambda *_: self._remove())
        buttons = QHBoxLayout()
        buttons.addWidget(add)
        buttons.addWidget(rem)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self._grid)
        lay.addLayout(buttons)
        self._filling = False
        self.set_table(table)

    # ---------------------------------------------------------------------------------- model
    def set_table(self, table: ClassTable) -> None:
        self.table = table
        self._filling = True
        self._grid.setRowCount(0)
        for spec in table.classes:
            r = self._grid.rowCount()
            self._grid.insertRow(r)
            idi = QTableWidgetItem(str(spec.id))
            idi.setFlags(idi.flags() & ~Qt.ItemIsEditable)
            self._grid.setItem(r, 0, idi)
            self._grid.setItem(r, 1, QTableWidgetItem(spec.name))
            btn = QPushButton()
            btn.setStyleSheet(f"background-color: {spec.color}")
            btn.clicked.connect(lambda _=False, i=spec.id: self._pick_color(i))
            self._grid.setCellWidget(r, 2, btn)
            radio = QRadioButton()
            radio.setChecked(spec.id == table.background)
            radio.setAutoExclusive(False)
            radio.toggled.connect(lambda on, i=spec.id: self._set_background(i, on))
            self._grid.setCellWidget(r, 3, radio)
        self._filling = False
        self._grid.selectRow(0)

    def current_label(self) -> int:
        rows = self._grid.selectionModel().selectedRows() if self._grid.selectionModel() else []
        if not rows:
            return self.table.foreground_ids[0]
        return self.table.classes[rows[0].row()].id

    def select_label(self, class_id: int) -> None:
        for r, spec in enumerate(self.table.classes):
            if spec.id == class_id:
                self._grid.selectRow(r)

    # -------------------------------------------------------------------------------- slots
    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        if self._filling or item.column() != 1:
            return
        self.table.classes[item.row()].name = item.text().strip() or f"class {self.table.classes[item.row()].id}"
        self.changed.emit()

    def _on_selection(self) -> None:
        if not self._filling:
            self.label_picked.emit(self.current_label())

    def _pick_color(self, class_id: int) -> None:
        spec = next(c for c in self.table.classes if c.id == class_id)
        col = QColorDialog.getColor(QColor(spec.color), self, f"Colour of {spec.name}")
        if col.isValid():
            spec.color = col.name()
            self.set_table(self.table)
            self.changed.emit()

    def _set_background(self, class_id: int, on: bool) -> None:
        if self._filling or not on:
            if not on and class_id == self.table.background and not self._filling:
                self.set_table(self.table)  # exactly one background: un-checking is not allowed
            return
        self.table.background = class_id
        self.set_table(self.table)
        self.changed.emit()

    @guarded
    def _add(self) -> None:
        self.table.add()
        self.set_table(self.table)
        self._grid.selectRow(len(self.table.classes) - 1)
        self.changed.emit()

    @guarded
    def _remove(self) -> None:
        self.table.remove(self.current_label())  # SessionError -> shown by the caller's guard
        self.set_table(self.table)
        self.changed.emit()
