"""MLflow "models from code" entry point of the unetflow pyfunc model.

MLflow stores this file with the model and runs it at load time, instead of unpickling
a Python object (which could run arbitrary code hidden in a pickle). It needs the
unetflow package installed where the model is loaded.
"""

import mlflow.models

from unetflow.serving import UNetSegmenter

mlflow.models.set_model(UNetSegmenter())
