"""`python -m refine_iqa.review MANIFEST ...` (same as `refine-iqa review`)."""

import sys

from refine_iqa.review.cli import main

sys.exit(main())
