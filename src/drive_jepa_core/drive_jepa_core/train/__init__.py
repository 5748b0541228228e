"""Planner training: samples from scenes (``dataset``), GridMask (``augment``), MTD vocabulary and pseudo-teachers
(``vocab``), online scoring targets (``targets``), configs (``config``), weights on disk (``checkpoint``), the
training loop (``loop``, ``drive-jepa train``), evaluation (``evaluate``, ``drive-jepa eval``) and the CLI (``cli``).
Import from the submodules."""
