"""Neural network modules: the V-JEPA 2 compatible video encoder and predictor (``patch_embed``, ``rope``,
``attention``, ``vit``, ``predictor``) and the planner modules next to them. Import from the submodules."""
