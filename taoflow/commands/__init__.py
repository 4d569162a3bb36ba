import taoflow.commands.checkpoints  # noqa: F401
import taoflow.commands.sample_data  # noqa: F401
