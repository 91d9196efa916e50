"""Training (the ``unils[train]`` extra): dataset format, the three UniLS stages, LoRA, corpus generator.

Nothing in the core package imports this subpackage; it needs the ``train`` extra.
"""
