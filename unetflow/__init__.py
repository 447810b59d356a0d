"""unetflow's integration layer: config, CLI, DVC, Ray Train and MLflow glue."""

import os

# Token authentication on by default, for the local Ray this package starts and for
# clients it connects. Ray reads the mode when it is imported, so it is set here, before
# any module imports ray. Set RAY_AUTH_MODE=disabled only for a cluster without auth.
os.environ.setdefault("RAY_AUTH_MODE", "token")

# Without a cluster address, Ray runs here on one machine: keep it on loopback. By
# default Ray rewrites 127.0.0.1 to the machine's outward IP (so other nodes could
# join); this single-node mode stops that. A multi-node cluster sets RAY_ADDRESS.
if not os.environ.get("RAY_ADDRESS"):
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
