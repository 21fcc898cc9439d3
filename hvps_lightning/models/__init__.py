"""Networks (plain ``nn.Module``s) and the tasks (LightningModules) that train them, given the network."""
