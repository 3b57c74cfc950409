"""``python -m green_mlops`` runs the command line."""
import sys

from green_mlops.cli import main

sys.exit(main())
