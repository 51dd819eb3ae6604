"""The optional accelerator: a C extension for the request head (see sharedsock/speedups.py).

Everything else is declared in pyproject.toml. ``optional=True`` lets an install on a
machine without a C compiler or Python headers go on with the pure-Python path.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("sharedsock._speedups",
                             sources=["sharedsock/_speedups.c", "sharedsock/_headscan.c",
                                      "sharedsock/_environ.c", "sharedsock/_response.c",
                                      "sharedsock/_slots.c", "sharedsock/_inline_watch.c"],
                             depends=["sharedsock/_headscan.h", "sharedsock/_environ.h",
                                      "sharedsock/_response.h", "sharedsock/_slots.h",
                                      "sharedsock/_inline_watch.h"],
                             optional=True)])
