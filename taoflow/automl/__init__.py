"""AutoML engine: search space (space.py), Optuna study (study.py), trial controller (controller.py).

No Prefect here: the sweep flow (flows/automl.py) and `taoflow tune` drive `SweepController`.
"""
