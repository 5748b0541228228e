"""V-JEPA pretraining of the video encoder on driving clips: multiblock tube masks (``masks``), EMA target
(``ema``), scene-file clip dataset (``data``), the training loop (``train``) and the ``drive-jepa pretrain`` command
(``cli``)."""
