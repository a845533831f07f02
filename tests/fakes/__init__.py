"""Local stand-ins for every external service, all on 127.0.0.1.

Used by the test suite, ``make demo`` and ``make bench``. Each fake speaks its
source's real protocol (paths, parameters, paging, error shapes) closely enough
that the production clients cannot tell the difference.
"""
