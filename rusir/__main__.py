"""`python -m rusir ...` is the `rusir` command."""
import sys

from rusir.cli import main

sys.exit(main())
