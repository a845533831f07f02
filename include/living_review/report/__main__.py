"""``python -m include.living_review.report``: write the page as static HTML."""
from include.living_review.report.page import main

raise SystemExit(main())
