import sys

from unetflow_cli.main import main

sys.exit(main())
