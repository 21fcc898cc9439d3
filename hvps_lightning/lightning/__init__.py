"""Lightning glue: the LightningCLI, callbacks, prediction writers, checkpoint policy, W&B logger.

These sit on top of the domain packages (models, tracking, metrics, evaluation, formats) and
call them; the domain packages never import from here.
"""
