"""The code file MLflow logs with the pyfunc model ("models from code"): loading the model runs this
file, which only names the model class. The model is never pickled (MLflow 3 refuses to load a
cloudpickled model by default, and nothing bitnas ships is a pickle). Not meant to be imported."""

import mlflow.models

from bitnas.export.mlflow_model import PackedEngineModel

mlflow.models.set_model(PackedEngineModel())
