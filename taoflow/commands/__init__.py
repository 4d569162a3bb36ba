import taoflow.commands.checkpoints
import taoflow.commands.models
import taoflow.commands.sample_data
import taoflow.commands.skills
import taoflow.commands.spec  # noqa: F401
