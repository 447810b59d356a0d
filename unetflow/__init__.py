"""unetflow's integration layer: config, CLI, DVC, Ray Train and MLflow glue."""

import os

# Token authentication on by default, for the local Ray this package starts and for
# clients it connects. Ray reads the mode when it is imported, so it is set here, before
# any module imports ray. Set RAY_AUTH_MODE=disabled only for a cluster without auth.
os.environ.setdefault("RAY_AUTH_MODE", "token")
