import taoflow.commands.checkpoints  # noqa: F401
