"""Networks (plain ``nn.Module`` in ``torch_model.py``) and their LightningModules."""
